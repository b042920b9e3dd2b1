"""``orch pause`` / ``orch resume`` and ``orch status`` showing it (issue 13).

Each command is one call of the operator API; these check the lines printed, the exit
codes, and what the call did in Redis.
"""

from __future__ import annotations

import json

import redis

from orchestrator import Orchestrator
from orchestrator.transitions import run
from tests.test_cli import Invoke, claim, invoke, ok, one_line_error

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
