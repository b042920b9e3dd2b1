"""Reading a queue's event stream: its newest entries, and the entries after given ids.

Owns the two reads of the stream (XREVRANGE: the latest, given oldest first; XREAD: what
came after an id, waiting up to a block) and the one decoding of their replies into
entries, ``(id, fields)`` or ``(stream key, id, fields)`` with the ids as text and the
fields as Redis gave them. What an entry means is its reader's: ``records.decode_event``
for the operator API (``Queue.events``, ``Orchestrator.next_events``), the demo's
``story.parse_event`` for its story. Does not form the stream's key (``keys``), choose
which streams one XREAD may cover (``connection.wake_groups``) nor wait across several
XREADs (``operations``). Reads only.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from redis import Redis

from .reading import text
from .records import Raw

Entry = tuple[str, Raw]  # (entry id, its fields)


def latest(client: Redis, key: str, count: int) -> list[Entry]:
    """The newest ``count`` entries of stream ``key``, oldest first (none when ``count`` < 1)."""
    if count < 1:
        return []
    reply: Any = client.xrevrange(key, count=count) or []
    return [(text(entry_id), fields or {}) for entry_id, fields in reversed(reply)]


def after(
    client: Redis, streams: Mapping[str, str], *, block_ms: int | None = None, count: int | None = None
) -> list[tuple[str, str, Raw]]:
    """The entries after each stream's id (stream key -> id, ``0-0`` for all), at most
    ``count`` per stream, waiting up to ``block_ms`` for the first (None: not at all), as
    (stream key, entry id, fields), each stream's in order."""
    reply: Any = client.xread(dict(streams), count=count, block=block_ms) or []  # type: ignore[arg-type]
    per_stream = reply.items() if isinstance(reply, dict) else reply  # RESP3 answers a map
    return [
        (text(stream), text(entry_id), fields or {})
        for stream, entries in per_stream
        for entry_id, fields in entries
    ]
