"""``orch doctor`` on the private redis-server: workers counted once, queues nobody serves,
and the container healthchecks ``doctor --worker NAME`` and ``doctor --scheduler``.

Workers register with the heartbeat script itself, as a running worker does."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner, Result

from orchestrator import Orchestrator, Settings
from orchestrator.cli import orch
from orchestrator.script_calls import run
from tests.redis_server import RedisServer


def doctor(redis_server: RedisServer, *args: str, **env: str) -> Result:
    clean: dict[str, str | None] = {k: None for k in os.environ if k.startswith("ORCH_")}
    return CliRunner().invoke(orch, ["doctor", *args], env={**clean, "ORCH_REDIS_URL": redis_server.url, **env})


def checks(result: Result) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(result.stdout)
    return found


def register(app: Orchestrator, worker: str, *queues: str, lease_ms: int = 60_000) -> None:
    for queue in queues:
        run(app.redis, app._scripts(queue).heartbeat(worker, lease_ms, {"queues": ",".join(queues)}, ()))


@pytest.fixture
def late(redis_server: RedisServer, r: Any) -> Iterator[Orchestrator]:
    """An Orchestrator whose scripts see Redis's clock a minute behind: what it schedules is overdue."""
    app = Orchestrator(settings=Settings(redis_url=redis_server.url), clock_offset_ms=-60_000)
    yield app
    app.close()


def test_a_worker_of_three_queues_counts_once(app: Orchestrator, redis_server: RedisServer) -> None:
    for queue in ("a", "b", "c"):
        app.enqueue("m:f", queue=queue)
    register(app, "w1", "a", "b", "c")
    register(app, "w2", "a")
    found = {c["check"]: c for c in checks(doctor(redis_server, "--json"))}
    assert found["workers"] == {"check": "workers", "status": "ok", "detail": "2 live workers"}


def test_pending_tasks_that_no_live_worker_serves_are_flagged(app: Orchestrator, redis_server: RedisServer) -> None:
    app.enqueue("m:f", queue="emails")
    app.enqueue("m:f", queue="emails")
    app.enqueue("m:f", queue="thumbs")
    register(app, "w1", "thumbs")
    register(app, "gone", "emails", lease_ms=1)  # registered, but its registration expired
    result = doctor(redis_server, "--json")
    assert result.exit_code == 1
    flagged = [c for c in checks(result) if "no live worker serves" in c["detail"]]
    assert flagged == [{
        "check": "queue emails", "status": "warn",
        "detail": "2 pending task(s) and no live worker serves this queue: start `orch worker -q emails`",
    }]


def test_doctor_worker_is_a_healthcheck(app: Orchestrator, redis_server: RedisServer) -> None:
    app.enqueue("m:f", queue="a")
    register(app, "w1", "a", "b")
    alive = doctor(redis_server, "--worker", "w1")
    assert alive.exit_code == 0, alive.output
    assert alive.stdout.split() == ["[", "OK]", "worker", "w1", "alive", "(queues", "a)"]
    assert doctor(redis_server, "--worker", "w1", "-q", "b").stdout.endswith("alive (queues a, b)\n")
    dead = doctor(redis_server, "--worker", "w9")
    assert dead.exit_code == 1 and "not alive" in dead.stdout
    run(app.redis, app._scripts("a").deregister("w1"))
    assert doctor(redis_server, "--worker", "w1").exit_code == 1


def test_doctor_worker_finds_a_worker_of_a_queue_nothing_was_enqueued_to(
    app: Orchestrator, redis_server: RedisServer
) -> None:
    """A fresh deployment: the worker's queue is not known yet; -q or ORCH_QUEUES names it."""
    register(app, "w1", "default")
    assert doctor(redis_server, "--worker", "w1").exit_code == 0  # -q defaults to the worker's default queue
    register(app, "w2", "emails")
    assert doctor(redis_server, "--worker", "w2").exit_code == 1
    assert doctor(redis_server, "--worker", "w2", "-q", "emails").exit_code == 0
    assert doctor(redis_server, "--worker", "w2", ORCH_QUEUES="emails:2 other").exit_code == 0


def test_doctor_scheduler_is_a_healthcheck(app: Orchestrator, late: Orchestrator, redis_server: RedisServer) -> None:
    app.enqueue("m:f", delay=60)
    ok = doctor(redis_server, "--scheduler", "--json")
    assert ok.exit_code == 0 and checks(ok) == [{"check": "queue default", "status": "ok", "detail": "nothing stuck"}]
    late.enqueue("m:f", delay=1)  # due a minute ago by Redis's clock, and nobody promoted it
    stuck = doctor(redis_server, "--scheduler")
    assert stuck.exit_code == 1 and "1 scheduled task(s) overdue" in stuck.stdout


def test_doctor_checks_one_thing_at_a_time(redis_server: RedisServer, r: Any) -> None:
    result = doctor(redis_server, "--worker", "w1", "--scheduler")
    assert result.exit_code == 2 and "give --worker NAME or --scheduler, not both" in result.stderr
