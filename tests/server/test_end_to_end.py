"""Issue #13's "done when": real workers, a scheduler and ``orch serve`` on a real Redis.

Tasks that succeed, retry and fail are enqueued over HTTP and run by two ``orch worker``
processes; then ``/metrics`` (read with prometheus-client's own parser), the REST API and
``orch status --json`` must tell the same story, and pause must hold a queue for everyone.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.redis_local import LocalRedis
from tests.integration.procs import Procs, orch_command, wait_for
from tests.server.conftest import BEARER, SAMPLE_APP, TOKENS, Serve

FINAL = {"success", "failed", "cancelled"}


@pytest.fixture
def queue(r: redis.Redis) -> str:
    """The sample tasks' declared queue (``--app`` holds them to it), in an emptied database;
    each test starts its own ``orch serve``, so no server remembers an earlier test's queues."""
    return "default"


@pytest.fixture
def procs(redis_server: LocalRedis, tmp_path: Any, queue: str) -> Iterator[Procs]:
    with Procs(redis_server.url, tmp_path, queue) as p:
        yield p


def _status(redis_url: str, queue: str) -> dict[str, Any]:
    out = subprocess.run(
        [*orch_command(), "status", "--json", "-q", queue],
        env={"ORCH_REDIS_URL": redis_url, "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=30, check=True,
    )
    found: dict[str, Any] = json.loads(out.stdout)["queues"][queue]
    return found


def _scrape(client: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics by (name, sorted labels); /metrics needs no token."""
    reply = httpx.get(f"{client.base_url}/metrics", timeout=10)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(reply.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def _one(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _enqueue(client: httpx.Client, queue: str, name: str, *args: Any) -> str:
    reply = client.post(f"/api/v1/queues/{queue}/tasks", json={"name": name, "args": list(args)})
    assert reply.status_code == 201, reply.text
    task_id: str = reply.json()["id"]
    return task_id


def _state(client: httpx.Client, task_id: str) -> str:
    reply = client.get(f"/api/v1/tasks/{task_id}")
    assert reply.status_code == 200, reply.text
    state: str = reply.json()["state"]
    return state.lower()


def test_workers_scheduler_and_serve_tell_one_story(
    serve: Serve, redis_server: LocalRedis, procs: Procs, queue: str
) -> None:
    server = serve("--app", SAMPLE_APP, env=TOKENS, headers=BEARER)
    workers = [procs.worker(f"w{i}", concurrency=2, queues=[queue]) for i in range(2)]
    scheduler = procs.scheduler(queues=[queue])
    alive = [*workers, scheduler, server.proc]

    with server.client() as client:
        ok = [_enqueue(client, queue, "tests:add", i, i) for i in range(5)]
        flaky = [_enqueue(client, queue, "tests:fail_once", f"{queue}-{i}") for i in range(3)]
        doomed = [_enqueue(client, queue, "tests:always_fail") for _ in range(2)]
        every = ok + flaky + doomed
        wait_for(lambda: all(_state(client, t) in FINAL for t in every), "every task to end", 60, alive=alive)
        assert {_state(client, t) for t in ok + flaky} == {"success"}
        assert {_state(client, t) for t in doomed} == {"failed"}

        # The task page's history: a retried attempt, then the one that succeeded.
        detail = client.get(f"/api/v1/queues/{queue}/tasks/{flaky[0]}").json()
        assert [a["outcome"] for a in detail["history"]] == ["retried", "succeeded"]
        assert "first attempt fails" in detail["history"][0]["error"]
        assert all(a["worker"] in {"w0", "w1"} and a["token"] for a in detail["history"])

        status = _status(redis_server.url, queue)
        one = client.get(f"/api/v1/queues/{queue}").json()
        listed = {q["queue"]: q for q in client.get("/api/v1/queues").json()["queues"]}[queue]
        samples = _scrape(client)

    counts = {"pending": 0, "scheduled": 0, "retrying": 0, "running": 0, "success": 8, "failed": 2, "cancelled": 0}
    assert status["counts"] == counts
    assert one["counts"] == counts and listed["counts"] == counts
    assert listed["workers"] == 2 and listed["paused"] is False and status["paused"] is False
    for state, n in counts.items():
        assert _one(samples, "orch_queue_tasks", queue=queue, state=state) == n, state
    assert _one(samples, "orch_workers", queue=queue) == 2
    assert _one(samples, "orch_queue_paused", queue=queue) == 0

    # Counters: each agrees with the totals orch status reads from the same Redis.
    totals = status["totals"]
    enqueued = {t: _one(samples, "orch_tasks_enqueued_total", queue=queue, task=t)
                for t in ("tests:add", "tests:fail_once", "tests:always_fail")}
    assert enqueued == {"tests:add": 5, "tests:fail_once": 3, "tests:always_fail": 2}
    assert sum(enqueued.values()) == totals["enqueued"] == 10

    def finished(task: str, outcome: str) -> float:
        return _one(samples, "orch_tasks_finished_total", queue=queue, task=task, outcome=outcome)

    assert finished("tests:add", "succeeded") == 5
    assert (finished("tests:fail_once", "retried"), finished("tests:fail_once", "succeeded")) == (3, 3)
    assert (finished("tests:always_fail", "retried"), finished("tests:always_fail", "failed")) == (2, 2)
    assert totals["succeeded"] == 8 and totals["failed"] == 2 and totals["retried"] == 5
    # Every attempt that ended has its run time in the histogram; every claim its wait.
    runs = sum(_one(samples, "orch_task_run_seconds_count", queue=queue, task=t) for t in enqueued)
    assert runs == 5 + 6 + 4 == totals["runs"]
    assert _one(samples, "orch_task_wait_seconds_count", queue=queue) == 15
    inf = _one(samples, "orch_task_run_seconds_bucket", queue=queue, task="tests:add", le="+Inf")
    assert inf == 5
    assert _one(samples, "orch_leases_reaped_total", queue=queue) == 0


def test_pause_holds_the_queue_for_every_worker(
    serve: Serve, redis_server: LocalRedis, procs: Procs, queue: str
) -> None:
    server = serve("--app", SAMPLE_APP, env=TOKENS, headers=BEARER)
    worker = procs.worker("w0", concurrency=2, queues=[queue])
    with server.client() as client:
        first = _enqueue(client, queue, "tests:add", 1, 2)
        wait_for(lambda: _state(client, first) == "success", "the first task to run", 30, alive=[worker])

        assert client.post(f"/api/v1/queues/{queue}/pause").status_code == 200
        held = _enqueue(client, queue, "tests:add", 3, 4)  # enqueue still works while paused
        status = _status(redis_server.url, queue)
        assert status["paused"] is True and status["counts"]["pending"] == 1
        assert _one(_scrape(client), "orch_queue_paused", queue=queue) == 1
        # The worker is idle and live; a claim would have taken the task at once. Give the
        # worker several of its claim rounds' worth and check it is still pending.
        for _ in range(20):
            assert _state(client, held) == "pending"

        assert client.post(f"/api/v1/queues/{queue}/resume").status_code == 200
        wait_for(lambda: _state(client, held) == "success", "the held task to run after resume", 30, alive=[worker])
        assert _status(redis_server.url, queue)["paused"] is False
