"""``orch pause`` / ``orch resume`` (and ``orch status`` showing it), ``orch run-now`` and
``orch delete``, and the attempts ``orch inspect`` shows (issue 13).

Each command is one call of the operator API; these check the lines printed, the exit
codes, and what the call did in Redis.
"""

from __future__ import annotations

import json

import redis

from orchestrator import Orchestrator
from orchestrator.script_calls import run
from tests.test_cli import Invoke, claim, fail, invoke, ok, one_line_error, state_of

__all__ = ["invoke"]  # the fixture, shared with tests.test_cli


def test_pause_and_resume_a_queue(invoke: Invoke, app: Orchestrator, r: redis.Redis) -> None:
    app.enqueue("pkg.mod:fn")
    assert ok(invoke("pause", "default")) == ["paused queue default"]
    assert ok(invoke("pause", "default")) == ["queue default was paused already"]
    assert app.queue("default").is_paused()
    assert run(app.redis, app._scripts("default").claim("w1", 1, 60_000)) == []
    assert any(line.startswith("queue default (PAUSED): 1 pending") for line in ok(invoke("status")))
    assert json.loads(invoke("status", "--json").stdout)["queues"]["default"]["paused"] is True
    assert ok(invoke("resume", "default")) == ["resumed queue default"]
    assert ok(invoke("resume", "default")) == ["queue default was not paused"]
    assert not app.queue("default").is_paused() and len(claim(app)) == 1
    assert json.loads(invoke("status", "--json").stdout)["queues"]["default"]["paused"] is False


def test_pause_errors(invoke: Invoke, app: Orchestrator) -> None:
    app.enqueue("pkg.mod:fn")
    one_line_error(invoke("pause", "nosuch"), "no queue 'nosuch'")
    one_line_error(invoke("pause", "bad name"), "invalid queue name")
    one_line_error(invoke("resume"), "Missing argument")


def test_run_now_and_its_errors(invoke: Invoke, app: Orchestrator, r: redis.Redis) -> None:
    delayed = app.enqueue("pkg.mod:fn", delay=3600).id
    assert ok(invoke("run-now", delayed)) == ["pending now (was scheduled)"]
    assert state_of(r, delayed) == "PENDING"
    one_line_error(
        invoke("run-now", delayed),
        f"cannot run now task {delayed}: it is PENDING, only SCHEDULED and RETRYING tasks can be run now",
    )
    one_line_error(invoke("run-now", "nope"), "no task nope in any queue")


def test_delete_asks_for_yes_and_spares_running_tasks(invoke: Invoke, app: Orchestrator, r: redis.Redis) -> None:
    running = app.enqueue("pkg.mod:fn").id
    claim(app)
    waiting = app.enqueue("pkg.mod:fn", key="k").id
    one_line_error(invoke("delete", waiting), "add --yes to confirm")
    assert state_of(r, waiting) == "PENDING"
    assert ok(invoke("delete", waiting, "--yes")) == [f"deleted {waiting} (pending)"]
    assert state_of(r, waiting) is None and not r.exists("orch:{default}:key:k")
    one_line_error(invoke("delete", running, "--yes"), f"cannot delete task {running}: it is RUNNING: cancel it first")
    assert state_of(r, running) == "RUNNING"


def test_inspect_shows_the_attempts(invoke: Invoke, app: Orchestrator) -> None:
    task_id = app.enqueue("pkg.mod:fn").id
    (lease,) = claim(app, worker="w9")
    fail(app, lease)
    lines = ok(invoke("inspect", task_id))
    start = lines.index(next(line for line in lines if line.startswith("history ")))
    assert lines[start].split(None, 1)[1] == "1 attempt(s) kept, oldest first"
    assert "failed  worker w9  token " + lease.token + "  ValueError: boom" in lines[start + 1]
    record = json.loads(invoke("inspect", task_id, "--json").stdout)
    [attempt] = record["history"]
    assert (attempt["outcome"], attempt["worker"], attempt["token"], attempt["error"]) == (
        "failed", "w9", lease.token, "ValueError: boom"
    )
    assert attempt["started_at"] <= attempt["ended_at"] and attempt["ended_at"].endswith("Z")
