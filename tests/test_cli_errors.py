"""The ``orch`` command line at the door: settings refused before anything runs, and every
failure to reach or use Redis with its own documented exit code (3 unreachable, 4 Redis
answered with an error), distinct from usage errors (2). Workers and schedulers stop at
start on permanent errors instead of retrying them forever."""

from __future__ import annotations

import logging
import os
import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from click.testing import CliRunner, Result

from orchestrator import ConfigurationError, Orchestrator, Settings, WorkerSettings
from orchestrator.cli import orch
from orchestrator.worker.worker import Worker
from tests.redis_server import RedisServer, free_port, snapshot

PASSWORD = "s3cret-pw"


def run_orch(*args: str, url: str | None, **env: str) -> Result:
    """``orch ARGS`` in-process with ORCH_REDIS_URL set to ``url`` (None: unset) and ``env``."""
    clean: dict[str, str | None] = {k: None for k in os.environ if k.startswith("ORCH_")}
    if url is not None:
        clean["ORCH_REDIS_URL"] = url
    return CliRunner().invoke(orch, list(args), env={**clean, **env})


def one_line(result: Result, code: int, *fragments: str) -> str:
    assert result.exit_code == code, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Stand-ins for run_worker / run_scheduler: record that they were reached."""
    seen: list[str] = []

    def fake(module: str, name: str) -> None:
        def runner(app: Orchestrator, settings: Any) -> int:
            seen.append(name)
            return 0

        monkeypatch.setitem(sys.modules, module, types.SimpleNamespace(**{name: runner}))

    fake("orchestrator.worker", "run_worker")
    fake("orchestrator.scheduler", "run_scheduler")
    monkeypatch.setattr(logging, "basicConfig", lambda **kw: None)
    return seen


@pytest.fixture
def locked() -> Iterator[RedisServer]:
    """A private redis-server that wants a password."""
    server = RedisServer().start()
    redis.Redis(port=server.port).config_set("requirepass", PASSWORD)
    yield server
    server.stop()


# ------------------------------------------------------------------- settings at the door


def test_a_heartbeat_above_a_third_of_the_lease_is_refused_with_exit_2(
    started: list[str], r: redis.Redis, redis_server: RedisServer
) -> None:
    before = snapshot(r)
    line = one_line(
        run_orch("worker", "--heartbeat-interval", "6", "--lease-timeout", "3", url=redis_server.url), 2,
        "heartbeat interval 6 s is above a third of the lease timeout 3 s",
    )
    assert "at most 1 s" in line
    result = run_orch("worker", url=redis_server.url, ORCH_LEASE_TIMEOUT="3", ORCH_HEARTBEAT_INTERVAL="2")
    one_line(result, 2, "heartbeat interval 2 s")
    assert started == [] and snapshot(r) == before
    assert run_orch("worker", "--lease-timeout", "3", url=redis_server.url).exit_code == 0  # heartbeat follows
    assert started == ["run_worker"]


def test_the_worker_refuses_a_heartbeat_that_loses_its_leases(app: Orchestrator, r: redis.Redis) -> None:
    short = Orchestrator(settings=app.settings.model_copy(update={"lease_timeout": 3.0}))
    before = snapshot(r)
    with pytest.raises(ConfigurationError, match="above a third of the lease timeout"):
        Worker(short, WorkerSettings(heartbeat_interval=6))
    assert Worker(short, WorkerSettings()).heartbeat == 1.0
    assert snapshot(r) == before


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["worker", "--lease-timeout", "1e-9"], "invalid option --lease-timeout: Input should be greater"),
        (["worker", "--lease-timeout", "inf"], "invalid option --lease-timeout: Input should be a finite number"),
        (["worker", "--idle-wait", "inf"], "invalid option --idle-wait: Input should be a finite number"),
        (["worker", "--heartbeat-interval", "0"], "invalid option --heartbeat-interval"),
        (["worker", "--grace", "nan"], "invalid option --grace: Input should be a finite number"),
        (["scheduler", "--interval", "1e-9"], "invalid option --interval: Input should be greater than or equal"),
        (["reaper", "--interval", "inf"], "invalid option --interval: Input should be a finite number"),
    ],
)
def test_durations_that_cannot_work_are_refused(
    started: list[str], redis_server: RedisServer, command: list[str], message: str
) -> None:
    one_line(run_orch(*command, url=redis_server.url), 2, message)
    assert started == []


# ------------------------------------------------------------------------ ORCH_REDIS_URL


def test_an_empty_orch_redis_url_is_an_error_naming_it(started: list[str]) -> None:
    for command in (["status"], ["worker"], ["scheduler"]):
        one_line(run_orch(*command, url=""), 2, "ORCH_REDIS_URL is set but empty")
    assert started == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://localhost/abc", "the database must be a number after the host"),
        ("localhost:6379", "not a usable Redis URL"),
        ("redis://:PW@[::1/0", "not a usable Redis URL"),
    ],
)
def test_an_unusable_url_is_an_error_naming_where_it_came_from(url: str, message: str) -> None:
    line = one_line(run_orch("status", url=url), 2, "ORCH_REDIS_URL: " + message)
    assert "PW" not in line
    line = one_line(run_orch("--redis-url", url, "status", url=None), 2, "--redis-url", message)
    assert "PW" not in line


# -------------------------------------------------------------------------- exit codes


def test_an_unreachable_redis_exits_3(started: list[str]) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    one_line(run_orch("status", url=url), 3, f"cannot reach Redis at {url}")
    one_line(run_orch("enqueue", "m:f", url=url), 3, "cannot reach Redis")


def test_a_database_out_of_range_exits_4(redis_server: RedisServer) -> None:
    url = f"redis://127.0.0.1:{redis_server.port}/99"
    one_line(run_orch("status", url=url), 4, f"Redis at {url} answered", "DB index is out of range")


def test_a_wrong_password_exits_4_and_is_not_shown(locked: RedisServer) -> None:
    url = f"redis://:wrong-pw@127.0.0.1:{locked.port}/0"
    line = one_line(run_orch("status", url=url), 4, "answered", "invalid username-password pair")
    assert "wrong-pw" not in line
    no_password = f"redis://127.0.0.1:{locked.port}/0"
    one_line(run_orch("status", url=no_password), 4, "answered")
    assert run_orch("status", url=f"redis://:{PASSWORD}@127.0.0.1:{locked.port}/0").exit_code == 0


def test_the_exit_codes_are_documented_in_the_help() -> None:
    text = run_orch("--help", url=None).stdout
    assert "Exit codes:" in text
    for line in ("2  usage error", "3  cannot reach Redis", "4  Redis answered with an error"):
        assert line in text


# ---------------------------------------------------- permanent errors at a process's start


@pytest.mark.parametrize("command", ["worker", "scheduler"])
def test_a_process_does_not_start_on_an_unreachable_redis(command: str) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    one_line(run_orch(command, url=url), 3, "cannot reach Redis", "Connection refused")


@pytest.mark.parametrize("command", ["worker", "scheduler"])
def test_a_process_does_not_start_with_a_wrong_password_or_database(command: str, locked: RedisServer) -> None:
    one_line(run_orch(command, url=f"redis://:nope@127.0.0.1:{locked.port}/0"), 4, "answered", "username-password")
    one_line(run_orch(command, url=f"redis://:{PASSWORD}@127.0.0.1:{locked.port}/99"), 4, "DB index is out of range")


def test_run_worker_raises_the_documented_errors(locked: RedisServer) -> None:
    from orchestrator.errors import RedisCommandError, RedisUnavailable
    from orchestrator.worker import run_worker

    gone = Orchestrator(settings=Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    with pytest.raises(RedisUnavailable, match="not starting"):
        run_worker(gone, WorkerSettings())
    refused = Orchestrator(settings=Settings(redis_url=f"redis://:nope@127.0.0.1:{locked.port}/0"))
    with pytest.raises(RedisCommandError, match="not starting"):
        run_worker(refused, WorkerSettings())


def test_worker_help_says_queues_are_served_in_strict_order() -> None:
    text = " ".join(run_orch("worker", "--help", url=None).stdout.split())
    assert "queues are served in strict order" in text
    assert "Weights that differ (-q high:3 -q default:1) share instead" in text
