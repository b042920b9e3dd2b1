"""Every known queue at a glance: ``app.overview()``, in a bounded number of round trips.

Owns reading, for all queues at once, what an overview page or ``GET /api/v1/queues``
shows: tasks per state, paused or not, live workers and their load (running over
concurrency, as ``orch_worker_load_ratio`` computes it); and the queues' per-minute
activity summed (``read_activity``: the dashboard's charts of the last hour, two round
trips whatever the number of queues). Three round trips whatever the
number of queues (the known-queues set; every queue's ZCARDs, pause flag and worker set
with the server clock; the live workers' running and concurrency), so the cost is
O(queues + workers), never O(tasks). Does not read counters, series or task records
(``queues``), nor build keys (``keys``). See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .errors import ValidationError
from .known_queues import known_queues
from .metrics_records import MAX_SERIES_MINUTES, QueueOverview, SeriesPoint, decode_series
from .metrics_records import minutes as minute_starts
from .models import STATE_NAMES
from .queues import INDEX_OF_NAME, _or_note
from .reading import redis_time_ms, text, to_float, to_int
from .script_calls import Call, command, run_many
from .shard_views import group_by_queue, merge_overview

if TYPE_CHECKING:
    from .operations import Operations


def read_overview(app: Operations) -> list[QueueOverview]:
    """Every known queue (sorted by name): counts per state, paused, live workers, load."""
    names = known_queues(app.redis, app.settings.prefix).names
    if not names:
        return []
    per_queue = len(STATE_NAMES) + 2
    calls: list[Call[Any]] = [command("TIME")]
    for name in names:
        k = app.keys(name)
        calls += [command("ZCARD", getattr(k, INDEX_OF_NAME[state])) for state in STATE_NAMES]
        calls += [command("EXISTS", k.paused), command("ZRANGE", k.workers, 0, -1, "WITHSCORES")]
    clock, *replies = run_many(app.redis, calls)  # packed by hiredis: a third of redis-py's pipeline cost
    if isinstance(clock, Exception):
        raise clock
    now_ms = int(clock[0]) * 1000 + int(clock[1]) // 1000
    found: list[tuple[str, dict[str, int], bool, list[str], list[str]]] = []
    for i, name in enumerate(names):
        k = app.keys(name)
        chunk = replies[i * per_queue : (i + 1) * per_queue]
        notes: list[str] = []
        counts = {
            state: int(_or_note(card, getattr(k, INDEX_OF_NAME[state]), 0, notes))
            for state, card in zip(STATE_NAMES, chunk, strict=False)
        }
        paused = _or_note(chunk[-2], k.paused, 0, notes)
        flat: Any = _or_note(chunk[-1], k.workers, [], notes)
        pairs = flat if flat and isinstance(flat[0], list) else zip(flat[::2], flat[1::2], strict=True)  # RESP3/2
        live = [text(wid) for wid, score in pairs if (deadline := to_float(score)) is not None and deadline >= now_ms]
        found.append((name, counts, bool(paused), live, notes))
    loads = _loads(app, found)
    glances = [
        (QueueOverview(queue=name, counts=counts, paused=paused, workers=len(live), load=loads[name], notes=notes),
         set(live))
        for name, counts, paused, live, notes in found
    ]
    merged = group_by_queue(glances, lambda g: g[0].queue, merge_overview)  # a sharded queue's shards summed
    return sorted((g for g, _ in merged), key=lambda g: g.queue)


def _loads(app: Operations, found: list[tuple[str, dict[str, int], bool, list[str], list[str]]]) -> dict[str, float]:
    """Each queue's running over concurrency of its live workers, in one round trip (none without workers)."""
    asked = [(name, wid) for name, _, _, live, _ in found for wid in live]
    loads = dict.fromkeys((name for name, *_ in found), 0.0)
    if not asked:
        return loads
    calls = [command("HMGET", app.keys(name).worker(wid), "running", "concurrency") for name, wid in asked]
    busy: dict[str, int] = {}
    capacity: dict[str, int] = {}
    for (name, _), reply in zip(asked, run_many(app.redis, calls), strict=True):
        if isinstance(reply, list):  # a worker hash of another type counts as nothing
            busy[name] = busy.get(name, 0) + (to_int(reply[0]) or 0)
            capacity[name] = capacity.get(name, 0) + (to_int(reply[1]) or 0)
    for name, total in capacity.items():
        loads[name] = busy[name] / total if total > 0 else 0.0
    return loads


def read_activity(app: Operations, names: Sequence[str], minutes: int) -> list[SeriesPoint]:
    """The per-minute series of ``names`` summed minute by minute (oldest first, the current
    minute last): counters added up, ``workers`` added, ``load`` the mean of the sampled
    queues' loads weighted by their workers. Two round trips (the clock; every queue's
    minute snapshots and counters), each queue decoded as ``Queue.series`` decodes it."""
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= MAX_SERIES_MINUTES:
        raise ValidationError(f"minutes must be an integer from 1 to {MAX_SERIES_MINUTES}, not {minutes!r}",
                              field="minutes")
    starts = minute_starts(redis_time_ms(app.redis), minutes)
    calls: list[Call[Any]] = []
    for name in names:
        k = app.keys(name)
        calls += [command("HGETALL", k.series(start)) for start in starts]
        calls.append(command("HGETALL", k.stats))
    replies = [_mapping(r) for r in run_many(app.redis, calls)] if calls else []
    per_queue = [
        decode_series(starts, replies[i : i + minutes], replies[i + minutes] or {})
        for i in range(0, len(replies), minutes + 1)
    ]
    if not per_queue:
        return decode_series(starts, [None] * minutes, {})  # no queue: zeros
    return [_summed(points) for points in zip(*per_queue, strict=True)]


def _mapping(reply: Any) -> dict[Any, Any] | None:
    """HGETALL's reply as a dict (RESP2 gives a flat list), None for an error (a key of another type)."""
    if isinstance(reply, dict):
        return reply
    if isinstance(reply, list):
        return dict(zip(reply[::2], reply[1::2], strict=True))
    return None


def _summed(points: Sequence[SeriesPoint]) -> SeriesPoint:
    counts = {name: sum(getattr(p, name) for p in points)
              for name in ("enqueued", "succeeded", "failed", "retried", "reaped", "runtime_ms", "runs")}
    sampled = [p for p in points if p.load is not None]
    workers = sum(p.workers or 0 for p in sampled)
    load = (sum((p.load or 0.0) * (p.workers or 0) for p in sampled) / workers if workers
            else sum(p.load or 0.0 for p in sampled) / len(sampled) if sampled else None)
    return SeriesPoint(minute=points[0].minute, **counts, load=load,
                       workers=workers if sampled else None)
