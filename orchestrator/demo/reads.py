"""What ``orch demo`` reads from its Redis directly, and the clean-up of its keys.

Owns the demo's reads of its queue: its live workers' loads and its tasks' final states
through the operator API (``Queue``), the new entries of its event stream as the story's
raw ``story.Event`` (``event_stream.after`` on the stream key ``keys.QueueKeys`` names),
and deleting every key under the demo's own fresh prefix at the end.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

from ..errors import TaskNotFound
from ..event_stream import after
from ..queues import Queue
from .story import Event, parse_event


def read_events(client: redis.Redis, key: str, last_id: str, block_ms: int | None) -> list[Event]:
    """Entries after ``last_id`` (all of them from ``0-0``), waiting up to ``block_ms`` for the first."""
    return [parse_event(eid, fields) for _, eid, fields in after(client, {key: last_id}, block_ms=block_ms, count=1000)]


def live_loads(queue: Queue) -> dict[str, float]:
    """Load (running / concurrency) of each live worker, as its last heartbeat told."""
    return {w.id: w.load for w in queue.workers() if w.alive and w.load is not None}


def final_states(queue: Queue, task_ids: Sequence[str]) -> dict[str, str | None]:
    """Each task's state as its record in Redis says (None when the record is missing)."""
    states: dict[str, str | None] = {}
    for task_id in task_ids:
        try:
            state = queue.task(task_id).state
        except TaskNotFound:
            state = None
        states[task_id] = None if state is None else state.value
    return states


def delete_prefix(client: redis.Redis, prefix: str) -> int:
    """Remove every key under ``prefix:`` (and only those); returns how many."""
    if not prefix or any(c in prefix for c in "*?[]\\"):
        raise ValueError(f"refusing to delete keys under a pattern-like prefix {prefix!r}")
    removed = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            removed += client.unlink(*batch)
            batch = []
    if batch:
        removed += client.unlink(*batch)
    return removed
