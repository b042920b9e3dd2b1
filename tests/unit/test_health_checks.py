"""The health checks one by one (``orchestrator.health``): each pure check with a value that
passes and one that does not, and the start-up gate of workers and schedulers on a stub
client. ``orch doctor`` as a whole is tested in tests/test_cli.py."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from redis.exceptions import AuthenticationError, BusyLoadingError, NoPermissionError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError

from orchestrator import health
from orchestrator.errors import ConfigurationError, RedisCommandError, RedisUnavailable
from orchestrator.health import Status

OK, WARN, FAIL = Status.OK, Status.WARN, Status.FAIL


@pytest.mark.parametrize(
    ("version", "status"),
    [("7.0.15", OK), ("6.2.0", OK), ("10.0.1", OK), ("6.0.20", FAIL), ("5.0.7", FAIL), ("6.1.9", FAIL)],
)
def test_version_needs_6_2(version, status):
    check = health.check_version(version)
    assert (check.name, check.status) == ("version", status)
    assert version in check.detail


@pytest.mark.parametrize(("policy", "status"), [("noeviction", OK), ("allkeys-lru", FAIL), ("volatile-ttl", FAIL)])
def test_eviction_must_be_noeviction(policy, status):
    check = health.check_eviction(policy)
    assert check.status is status
    assert policy in check.detail


@pytest.mark.parametrize(
    ("aof", "save", "fsync", "status", "says"),
    [
        (True, "", "everysec", OK, "appendonly yes, appendfsync everysec"),
        (True, "", "always", OK, "appendfsync always"),
        (True, "3600 1", "no", WARN, "appendfsync no"),
        (False, "3600 1 300 100", "everysec", WARN, "RDB snapshots only"),
        (False, "", "everysec", WARN, "no persistence"),
    ],
)
def test_persistence_wants_an_append_only_file(aof, save, fsync, status, says):
    check = health.check_persistence(aof, save, fsync)
    assert check.status is status
    assert says in check.detail


@pytest.mark.parametrize(
    ("used", "limit", "status"),
    [(10 * 2**20, 0, OK), (50, 100, OK), (80, 100, OK), (81, 100, WARN), (95, 100, WARN), (96, 100, FAIL)],
)
def test_memory_warns_past_80_and_fails_past_95_percent_of_maxmemory(used, limit, status):
    assert health.check_memory(used, limit).status is status


@pytest.mark.parametrize(("ms", "status"), [(0.3, OK), (4.99, OK), (5.0, WARN), (120.0, WARN)])
def test_latency_warns_from_5_ms(ms, status):
    assert health.check_latency(ms).status is status


def test_scripts_not_yet_cached_is_not_a_problem():
    # Scripts load themselves on first use (and after a restart): this check only informs.
    for loaded in (0, 5, 11):
        check = health.check_scripts(loaded, 11)
        assert check.status is OK and f"{loaded}/11" in check.detail


@pytest.mark.parametrize(("live", "status"), [(0, WARN), (1, OK), (7, OK)])
def test_workers_warns_when_none_is_alive(live, status):
    assert health.check_workers(live).status is status


@pytest.mark.parametrize(
    ("overdue", "expired", "status", "says"),
    [
        (0, 0, OK, "nothing stuck"),
        (3, 0, WARN, "3 scheduled task(s) overdue"),
        (0, 2, WARN, "2 running task(s) with a lease expired"),
        (1, 1, WARN, "is `orch scheduler` running?"),
    ],
)
def test_stuck_tasks_point_at_a_missing_scheduler(overdue, expired, status, says):
    check = health.check_stuck("emails", overdue, expired)
    assert (check.name, check.status) == ("queue emails", status)
    assert says in check.detail


# ------------------------------------------------------------- the start-up gate


class StubRedis:
    """Answers INFO and CONFIG GET with a server's settings, or raises ``error`` on PING
    (on the first ``failures`` PINGs only, when given)."""

    def __init__(
        self, *, policy: str = "noeviction", aof: int = 1, error: Exception | None = None, failures: int = 10**9
    ) -> None:
        self.policy, self.aof, self.error, self.failures = policy, aof, error, failures
        self.pings = 0

    def info(self) -> dict[str, Any]:
        return {"redis_version": "7.0.15", "aof_enabled": self.aof}

    def config_get(self, name: str) -> dict[str, str]:
        return {"maxmemory-policy": self.policy, "save": "", "appendfsync": "everysec"}

    def ping(self) -> bool:
        self.pings += 1
        if self.error is not None and self.pings <= self.failures:
            raise self.error
        return True


LOG = logging.getLogger("tests.health")


def test_a_safe_server_starts_without_a_word(caplog):
    with caplog.at_level(logging.WARNING):
        health.startup_checks(StubRedis(), strict=True, tag="[W]", log=LOG)  # type: ignore[arg-type]
    assert caplog.records == []


def test_an_unsafe_server_is_a_warning_or_with_strict_a_refusal(caplog):
    unsafe = StubRedis(policy="allkeys-lru", aof=0)
    with caplog.at_level(logging.WARNING):
        health.startup_checks(unsafe, strict=False, tag="[W]", log=LOG)  # type: ignore[arg-type]
    assert [r.getMessage() for r in caplog.records] == [
        "[W] WARNING eviction: maxmemory-policy is allkeys-lru: Redis may evict task records; set it to noeviction",
        "[W] WARNING persistence: no persistence: a Redis restart loses every task; use appendonly yes",
    ]
    with pytest.raises(ConfigurationError, match=r"unsafe Redis server \(maxmemory-policy is allkeys-lru.*--strict"):
        health.startup_checks(unsafe, strict=True, tag="[W]", log=LOG)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "raised"),
    [
        (RedisConnectionError("Connection refused"), RedisUnavailable),
        (AuthenticationError("invalid password"), RedisCommandError),
        (ResponseError("ERR DB index is out of range"), RedisCommandError),
    ],
)
def test_first_contact_stops_a_process_on_a_permanent_error(error, raised):
    with pytest.raises(raised, match="not starting"):
        health.first_contact(StubRedis(error=error), tag="[W]", log=LOG)  # type: ignore[arg-type]


def test_first_contact_passes_a_user_that_may_not_ping_and_waits_out_loading():
    health.first_contact(StubRedis(error=NoPermissionError("no PING")), tag="[W]", log=LOG)  # type: ignore[arg-type]
    loading = StubRedis(error=BusyLoadingError("loading"))
    with pytest.raises(RedisUnavailable, match="still loading"):
        health.first_contact(loading, tag="[W]", log=LOG, loading_wait=0)  # type: ignore[arg-type]
    assert loading.pings >= 1


def test_first_contact_waits_out_a_busy_script_and_gives_up_at_its_deadline(caplog):
    busy = ResponseError("BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.")
    passing = StubRedis(error=busy, failures=2)
    with caplog.at_level(logging.WARNING):
        health.first_contact(passing, tag="[W]", log=LOG)  # type: ignore[arg-type]
    assert passing.pings == 3
    assert [r.getMessage() for r in caplog.records] == ["[W] Redis is busy running a script (BUSY); waiting"] * 2
    with pytest.raises(RedisUnavailable, match="still busy running a script"):
        health.first_contact(StubRedis(error=busy), tag="[W]", log=LOG, loading_wait=0)  # type: ignore[arg-type]
