"""``/metrics``: every known queue's state and counters in the Prometheus text format.

Owns the metric names issue #13 fixes and how each is read from the operator API
(``app.overview()`` for counts, paused, workers and load of every queue at once;
``Queue.metrics()`` for each queue's counters and buckets): a prometheus-client custom
collector, rebuilt per scrape, so the values are Redis's (every worker's, surviving
restarts), never one process's memory.
A scrape costs O(queues x task-name labels) reads, never O(tasks). Labels are queue, task
(a name, capped per queue in Redis; the rest are ``__other__``), outcome and state: never
a task, worker or tenant id. Does not serve HTTP (``orch serve`` mounts ``exposition``)
and builds no keys. See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, cast

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString as _go_float

from ..metrics_records import OUTCOMES, Histogram, QueueOverview

if TYPE_CHECKING:
    from ..operations import Operations
    from ..queues import Queue


class QueueCollector(Collector):
    """Reads every known queue (or the ones named) through the operator API at each collect."""

    def __init__(self, app: Operations, queues: Iterable[str] | None = None) -> None:
        self.app = app
        self.queues = None if queues is None else list(queues)

    def collect(self) -> Iterator[Metric]:
        f = _Families()
        # Counts, paused, workers and load of every queue in three round trips (app.overview),
        # then each queue's counters and buckets (Queue.metrics: two round trips).
        wanted = None if self.queues is None else set(self.queues)
        for glance in self.app.overview():
            if wanted is None or glance.queue in wanted:
                f.add_queue(self.app.queue(glance.queue), glance)
        yield from f.all()


class _Families:
    """The metric families of one scrape, filled queue by queue."""

    def __init__(self) -> None:
        self.enqueued = CounterMetricFamily(
            "orch_tasks_enqueued", "Tasks enqueued, per task name.", labels=["queue", "task"]
        )
        self.finished = CounterMetricFamily(
            "orch_tasks_finished",
            "Attempts ended, per task name and outcome (succeeded, failed, retried, cancelled).",
            labels=["queue", "task", "outcome"],
        )
        self.run = HistogramMetricFamily(
            "orch_task_run_seconds", "Run time of finished attempts, per task name.", labels=["queue", "task"]
        )
        self.wait = HistogramMetricFamily(
            "orch_task_wait_seconds", "Time from eligible (enqueued, due, retried) to claimed.", labels=["queue"]
        )
        self.tasks = GaugeMetricFamily("orch_queue_tasks", "Tasks per state.", labels=["queue", "state"])
        self.oldest = GaugeMetricFamily(
            "orch_queue_oldest_pending_seconds",
            "Age of the oldest pending task since it became eligible (0 when none is pending).",
            labels=["queue"],
        )
        self.paused = GaugeMetricFamily("orch_queue_paused", "1 while the queue is paused.", labels=["queue"])
        self.workers = GaugeMetricFamily("orch_workers", "Live workers serving the queue.", labels=["queue"])
        self.load = GaugeMetricFamily(
            "orch_worker_load_ratio",
            "Running tasks over the concurrency of the queue's live workers, at their last heartbeat.",
            labels=["queue"],
        )
        self.reaped = CounterMetricFamily(
            "orch_leases_reaped", "Leases that expired and were taken back by the reaper.", labels=["queue"]
        )
        self.ticks = CounterMetricFamily(
            "orch_schedule_ticks",
            "Periodic schedules' ticks, per schedule and outcome (fired, caught_up, skipped).",
            labels=["queue", "schedule", "outcome"],
        )
        self.late = CounterMetricFamily(
            "orch_late_outcomes_refused",
            "Outcomes refused because their lease was lost (reaped or claimed again): fencing at work.",
            labels=["queue"],
        )

    def all(self) -> list[Metric]:
        return [self.enqueued, self.finished, self.run, self.wait, self.tasks, self.oldest, self.paused,
                self.workers, self.load, self.reaped, self.late, self.ticks]

    def add_queue(self, queue: Queue, glance: QueueOverview) -> None:
        q = queue.name
        m = queue.metrics()
        for task, n in m.enqueued.items():
            self.enqueued.add_metric([q, task], n)
        for task, outcomes in m.finished.items():
            for outcome in OUTCOMES:
                if outcome in outcomes:
                    self.finished.add_metric([q, task, outcome], outcomes[outcome])
        for task, histogram in m.run_seconds.items():
            self.run.add_metric([q, task], _buckets(histogram), histogram.sum)
        self.wait.add_metric([q], _buckets(m.wait_seconds), m.wait_seconds.sum)
        self.oldest.add_metric([q], m.oldest_pending_seconds or 0.0)
        self.reaped.add_metric([q], m.reaped)
        self.late.add_metric([q], m.late_outcomes_refused)
        for schedule, outcomes in m.schedule_ticks.items():
            for outcome, n in sorted(outcomes.items()):
                self.ticks.add_metric([q, schedule, outcome], n)
        for state, n in glance.counts.items():
            self.tasks.add_metric([q, state], n)
        self.paused.add_metric([q], 1.0 if glance.paused else 0.0)
        self.workers.add_metric([q], glance.workers)
        self.load.add_metric([q], glance.load)


_go = cast(Callable[[float], str], _go_float)  # untyped in prometheus-client


def _buckets(histogram: Histogram) -> list[tuple[str, float]]:
    """Prometheus's cumulative buckets, +Inf last."""
    return [(_go(b.le), float(b.count)) for b in histogram.buckets] + [("+Inf", float(histogram.count))]


def exposition(app: Operations, queues: Iterable[str] | None = None) -> tuple[bytes, str]:
    """One scrape: the text format's body and its content type."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector(app, queues))
    return generate_latest(registry), CONTENT_TYPE_LATEST
