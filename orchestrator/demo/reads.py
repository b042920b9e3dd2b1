"""What ``orch demo`` reads from its Redis directly, and the clean-up of its keys.

Owns the demo's few reads outside the operator API: the new entries of
its queue's event stream (as ``story.Event``), its live workers' loads, its tasks' final
states, and deleting every key under the demo's own fresh prefix at the end. The only
module of the demo that names keys, and only through ``keys.QueueKeys``.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import redis

from ..keys import QueueKeys
from ..reading import text
from .story import Event, parse_event


def read_events(client: redis.Redis, key: str, last_id: str, block_ms: int | None) -> list[Event]:
    """Entries after ``last_id`` (all of them from ``0-0``), waiting up to ``block_ms`` for the first."""
    reply: Any = client.xread({key: last_id}, count=1000, block=block_ms)
    return [parse_event(entry_id, fields) for _, entries in reply or () for entry_id, fields in entries]


def live_loads(client: redis.Redis, keys: QueueKeys, now_ms: float) -> dict[str, float]:
    """Load (running / concurrency) of each worker whose heartbeat deadline is ahead."""
    entries: Any = client.zrange(keys.workers, 0, -1, withscores=True)
    workers = [text(w) for w, deadline in entries if deadline >= now_ms]
    pipe = client.pipeline(transaction=False)
    for worker in workers:
        pipe.hget(keys.worker(worker), "load")
    loads = {}
    for worker, raw in zip(workers, pipe.execute(), strict=True):
        with contextlib.suppress(TypeError, ValueError):
            loads[worker] = float(raw)
    return loads


def final_states(client: redis.Redis, keys: QueueKeys, task_ids: Sequence[str]) -> dict[str, str | None]:
    """Each task's state as its record in Redis says (None when the record is missing)."""
    pipe = client.pipeline(transaction=False)
    for task_id in task_ids:
        pipe.hget(keys.task(task_id), "state")
    return {t: None if s is None else text(s) for t, s in zip(task_ids, pipe.execute(), strict=True)}


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
