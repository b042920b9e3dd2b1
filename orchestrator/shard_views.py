"""A sharded queue as one queue: its shards' stats, overview and metrics summed (pure).

Owns how the records read from each shard (``hot#0``, ``hot#1-4``, ...) become the one
record of the logical queue ``hot`` that ``orch status``, ``/api/v1/queues``, ``/metrics``
and the dashboard show: counts, counters and histogram buckets summed, paused when any
shard is, workers once each (a worker registers on every shard it serves), load the mean
of the shards', oldest pending the oldest. Per-shard detail stays readable by the shard's
own name (``app.queue("hot#0").stats()``). Does not read Redis (``queues``, ``overview``)
nor know which queues are sharded (``shards``).
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from .keys import SHARD_MARK, logical_queue
from .metrics_records import Bucket, Histogram, QueueMetrics, QueueOverview
from .records import QueueStats, merge_workers

T = TypeVar("T")


def group_by_queue(records: Sequence[T], name: Callable[[T], str], merge: Callable[[str, list[T]], T]) -> list[T]:
    """One record per logical queue, in the order of each queue's first record: a queue's
    shards merged (``merge``), a plain queue's record kept as it is."""
    groups: dict[str, list[T]] = {}
    for record in records:
        groups.setdefault(logical_queue(name(record)), []).append(record)
    return [
        parts[0] if len(parts) == 1 and name(parts[0]) == queue else merge(queue, parts)
        for queue, parts in groups.items()
    ]


def _sum(dicts: Sequence[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


def _shards_note(parts: Sequence[QueueStats]) -> str:
    shards = [p.queue for p in parts if SHARD_MARK in p.queue]
    return f"sharded: the sum of {len(shards)} shards ({', '.join(shards)})"


def merge_stats(queue: str, parts: list[QueueStats]) -> QueueStats:
    totals = _sum([p.totals for p in parts])
    runs, runtime = totals.get("runs", 0), totals.get("runtime_ms")
    return QueueStats(
        queue=queue,
        time=max(p.time for p in parts),
        counts=_sum([p.counts for p in parts]),
        paused=any(p.paused for p in parts),
        totals=totals,
        avg_runtime_ms=runtime / runs if runs and runtime is not None else None,
        workers=merge_workers([w for p in parts for w in p.workers]),
        notes=[_shards_note(parts), *(n for p in parts for n in p.notes if not n.startswith("sharded: "))],
    )


def merge_overview(queue: str, parts: list[tuple[QueueOverview, set[str]]]) -> tuple[QueueOverview, set[str]]:
    """Overviews with each one's live worker ids (a worker serving three shards counts once)."""
    live = set().union(*(ids for _, ids in parts))
    glances = [g for g, _ in parts]
    return QueueOverview(
        queue=queue,
        counts=_sum([g.counts for g in glances]),
        paused=any(g.paused for g in glances),
        workers=len(live),
        load=sum(g.load for g in glances) / len(glances),
        notes=[n for g in glances for n in g.notes],
    ), live


def _histogram(parts: Sequence[Histogram]) -> Histogram:
    counts: dict[float, int] = {}
    for h in parts:
        for b in h.buckets:
            counts[b.le] = counts.get(b.le, 0) + b.count
    return Histogram(
        buckets=[Bucket(le=le, count=n) for le, n in sorted(counts.items())],
        count=sum(h.count for h in parts),
        sum=sum(h.sum for h in parts),
    )


def merge_metrics(queue: str, parts: list[QueueMetrics]) -> QueueMetrics:
    labels = sorted({k for p in parts for k in p.run_seconds})
    finished_labels = sorted({k for p in parts for k in p.finished})
    schedules = sorted({k for p in parts for k in p.schedule_ticks})
    oldest = [p.oldest_pending_seconds for p in parts if p.oldest_pending_seconds is not None]
    return QueueMetrics(
        queue=queue,
        time=max(p.time for p in parts),
        enqueued=_sum([p.enqueued for p in parts]),
        finished={k: _sum([p.finished[k] for p in parts if k in p.finished]) for k in finished_labels},
        run_seconds={k: _histogram([p.run_seconds[k] for p in parts if k in p.run_seconds]) for k in labels},
        wait_seconds=_histogram([p.wait_seconds for p in parts]),
        reaped=sum(p.reaped for p in parts),
        late_outcomes_refused=sum(p.late_outcomes_refused for p in parts),
        oldest_pending_seconds=max(oldest) if oldest else None,
        schedule_ticks={k: _sum([p.schedule_ticks[k] for p in parts if k in p.schedule_ticks]) for k in schedules},
        notes=[n for p in parts for n in p.notes],
    )
