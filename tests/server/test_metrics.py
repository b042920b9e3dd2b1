"""``/metrics`` and the operator reads behind it: ``Queue.metrics()``, ``Queue.series()``,
and ``exposition()`` parsed by prometheus-client's own parser, on a real redis-server."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from orchestrator import Orchestrator
from orchestrator.errors import LeaseLost, ValidationError
from orchestrator.script_calls import run
from orchestrator.server.metrics import exposition

ERROR = orjson.dumps({"type": "ValueError", "message": "boom", "traceback": ""})
NAMES = {
    "orch_tasks_enqueued", "orch_tasks_finished", "orch_task_run_seconds", "orch_task_wait_seconds",
    "orch_queue_tasks", "orch_queue_oldest_pending_seconds", "orch_queue_paused", "orch_workers",
    "orch_worker_load_ratio", "orch_leases_reaped", "orch_late_outcomes_refused",
    "orch_schedule_ticks",
}


def scrape(app: Orchestrator) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, content_type = exposition(app)
    assert content_type.startswith("text/plain")
    families = list(text_string_to_metric_families(body.decode()))
    assert {f.name for f in families} == NAMES
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}


def busy_queue(app: Orchestrator) -> list[str]:
    """jobs:ok x3 (one succeeds), jobs:bad x1 (fails once, retried), one delayed; a worker at 1 of 4."""
    handles = app.enqueue_many([app.request("jobs:ok", [i]) for i in range(3)] + [app.request("jobs:bad")])
    app.enqueue("jobs:ok", delay=3600)
    t = app._scripts("default")
    leases = run(app.redis, t.claim("w1", 1, 60_000))
    run(app.redis, t.complete(leases[0].task_id, leases[0].token, b"1", 0))
    [bad] = [h for h in handles if h.info().name == "jobs:bad"]
    run(app.redis, t.claim("w1", 3, 60_000))
    lease_token = app.get_task(bad.id).token
    assert lease_token is not None
    run(app.redis, t.fail(bad.id, lease_token, ERROR))
    with pytest.raises(LeaseLost):
        run(app.redis, t.complete(bad.id, lease_token, b"1", 0))  # late: counted
    run(app.redis, t.heartbeat("w1", 60_000, {"concurrency": 4, "running": 1}, []))
    return [h.id for h in handles]


def test_a_scrape_reads_every_metric_from_redis(app: Orchestrator) -> None:
    ids = busy_queue(app)
    s = scrape(app)
    q = (("queue", "default"),)
    assert s[("orch_tasks_enqueued_total", (("queue", "default"), ("task", "jobs:ok")))] == 4
    assert s[("orch_tasks_enqueued_total", (("queue", "default"), ("task", "jobs:bad")))] == 1
    finished = (("outcome", "succeeded"), ("queue", "default"), ("task", "jobs:ok"))
    assert s[("orch_tasks_finished_total", finished)] == 1
    retried = (("outcome", "retried"), ("queue", "default"), ("task", "jobs:bad"))
    assert s[("orch_tasks_finished_total", retried)] == 1
    run_labels = (("queue", "default"), ("task", "jobs:ok"))
    assert s[("orch_task_run_seconds_count", run_labels)] == 1
    assert s[("orch_task_run_seconds_bucket", (("le", "+Inf"), *run_labels))] == 1
    assert s[("orch_task_wait_seconds_count", q)] == 4  # four tasks claimed
    assert s[("orch_queue_tasks", (("queue", "default"), ("state", "running")))] == 2
    assert s[("orch_queue_tasks", (("queue", "default"), ("state", "retrying")))] == 1
    assert s[("orch_queue_tasks", (("queue", "default"), ("state", "scheduled")))] == 1
    assert s[("orch_queue_tasks", (("queue", "default"), ("state", "success")))] == 1
    assert s[("orch_queue_paused", q)] == 0
    assert s[("orch_workers", q)] == 1
    assert s[("orch_worker_load_ratio", q)] == 0.25
    assert s[("orch_leases_reaped_total", q)] == 0
    assert s[("orch_late_outcomes_refused_total", q)] == 1
    assert s[("orch_queue_oldest_pending_seconds", q)] == 0  # nothing pending
    labels = {v for _, pairs in s for _, v in pairs}
    assert not labels & {*ids, "w1"}, "a task or worker id as a label"


def test_histogram_buckets_are_cumulative_and_end_with_inf(app: Orchestrator) -> None:
    busy_queue(app)
    body, _ = exposition(app)
    [run_family] = [f for f in text_string_to_metric_families(body.decode()) if f.name == "orch_task_run_seconds"]
    buckets = [(s.labels["le"], s.value) for s in run_family.samples
               if s.name.endswith("_bucket") and s.labels["task"] == "jobs:ok"]
    assert buckets[0][0] == "0.005" and buckets[-1][0] == "+Inf"
    values = [v for _, v in buckets]
    assert values == sorted(values)


def test_oldest_pending_is_the_earliest_eligible_across_priorities(app: Orchestrator, r: Any) -> None:
    app.enqueue("jobs:ok", priority=9)
    app.enqueue("jobs:ok", priority=1)
    q = app.queue("default")
    first = q.metrics().oldest_pending_seconds
    assert first is not None and 0 <= first < 30
    # Age the priority-9 task (the lower priority): it is still the oldest one.
    [low] = [m.decode() for m in r.zrange(q.keys.pending, -1, -1)]
    r.hset(q.keys.task(low), "ready_at", int(r.time()[0]) * 1000 - 120_000)
    oldest = q.metrics().oldest_pending_seconds
    assert oldest is not None and 120 <= oldest < 150


def test_series_gives_one_point_a_minute_oldest_first(app: Orchestrator) -> None:
    busy_queue(app)
    points = app.queue("default").series(minutes=5)
    assert len(points) == 5
    assert [p.minute for p in points] == sorted(p.minute for p in points)
    assert sum(p.enqueued for p in points) == 5
    assert sum(p.succeeded for p in points) == 1 and sum(p.retried for p in points) == 1
    assert sum(p.runs for p in points) == 2
    with pytest.raises(ValidationError, match="minutes"):
        app.queue("default").series(minutes=0)
    with pytest.raises(ValidationError, match="minutes"):
        app.queue("default").series(minutes=24 * 60 + 1)


def test_a_spoiled_metrics_key_reads_empty_with_a_note(app: Orchestrator, r: Any) -> None:
    app.enqueue("jobs:ok")
    q = app.queue("default")
    r.delete(q.keys.metrics)
    r.set(q.keys.metrics, "x")
    m = q.metrics()
    assert m.enqueued == {} and m.notes
    scrape(app)  # still answers


def test_an_empty_deployment_scrapes_to_no_samples(app: Orchestrator) -> None:
    body, _ = exposition(app)
    assert all(not f.samples for f in text_string_to_metric_families(body.decode()))
