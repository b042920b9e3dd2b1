"""Settings are checked where they are built: bounds on every duration, the heartbeat
against the lease, and Redis URLs that redis-py would read differently than written."""

from __future__ import annotations

import math

import pytest

from orchestrator import ConfigurationError, Orchestrator, SchedulerSettings, Settings, WorkerSettings
from orchestrator.config import DEFAULT_REDIS_URL, redis_url_from_env


@pytest.mark.parametrize(
    ("model", "field", "value", "message"),
    [
        (Settings, "lease_timeout", 1e-9, "greater than or equal to 0.1"),
        (Settings, "lease_timeout", math.inf, "finite number"),
        (Settings, "lease_timeout", 2 * 86_400, "less than or equal to 86400"),
        (Settings, "result_ttl", math.nan, "finite number"),
        (Settings, "result_ttl", -1, "greater than or equal to 0"),
        (WorkerSettings, "idle_wait", math.inf, "finite number"),
        (WorkerSettings, "idle_wait", 1e-9, "greater than or equal to 0.001"),
        (WorkerSettings, "heartbeat_interval", 1e-9, "greater than or equal to 0.001"),
        (WorkerSettings, "heartbeat_interval", 7200, "less than or equal to 3600"),
        (WorkerSettings, "grace", -1, "greater than or equal to 0"),
        (WorkerSettings, "grace", math.inf, "finite number"),
        (SchedulerSettings, "interval", 1e-9, "greater than or equal to 0.001"),
        (SchedulerSettings, "interval", math.inf, "finite number"),
    ],
)
def test_durations_out_of_bounds_are_refused_naming_the_setting(
    model: type[Settings | WorkerSettings | SchedulerSettings], field: str, value: float, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=f"invalid setting {field}: .*{message}") as caught:
        model(**{field: value})
    assert caught.value.field == field


def test_the_bounds_let_the_test_suites_millisecond_settings_through() -> None:
    assert Settings(lease_timeout=0.5).lease_timeout == 0.5
    worker = WorkerSettings(heartbeat_interval=0.1, idle_wait=0.05, grace=0)
    assert worker.heartbeat_for(0.5) == 0.1
    assert SchedulerSettings(interval=0.05).interval == 0.05


def test_a_heartbeat_above_a_third_of_the_lease_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"heartbeat interval 6 s is above a third of the lease timeout 3 s"):
        WorkerSettings(heartbeat_interval=6).heartbeat_for(3)
    with pytest.raises(ConfigurationError, match="at most 1 s"):
        WorkerSettings(heartbeat_interval=1.01).heartbeat_for(3)
    assert WorkerSettings(heartbeat_interval=1).heartbeat_for(3) == 1


def test_an_unset_heartbeat_follows_the_lease() -> None:
    assert WorkerSettings().heartbeat_for(30) == 5.0
    assert WorkerSettings().heartbeat_for(3) == 1.0


def test_unknown_settings_are_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="invalid setting lease: Extra inputs are not permitted"):
        Settings(lease=3)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "it is empty"),
        ("   ", "it is empty"),
        ("localhost:6379", "not a usable Redis URL"),
        ("http://host/0", "not a usable Redis URL"),
        ("redis://host:port/0", "not a usable Redis URL"),
        ("redis://host/abc", "the database must be a number after the host (redis://host:6379/0), not 'abc'"),
        ("redis://host/1/2", "the database must be a number"),
        ("redis://host/0?db=x", "not a usable Redis URL"),
        ("redis://host/0?x=1", "its query option 'x' is not a Redis connection option"),
    ],
)
def test_unusable_redis_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match="invalid setting redis_url: ") as caught:
        Settings(redis_url=url)
    assert message in str(caught.value)


def test_a_refused_url_never_shows_its_password() -> None:
    for url in ("redis://:SECRET@[::1/0", "redis://u:SECRET@host/abc", "redis://u:SECRET@host:x/0",
                "redis://u:SECRET@host/0?bogus=1"):
        with pytest.raises(ConfigurationError) as caught:
            Settings(redis_url=url)
        assert "SECRET" not in str(caught.value) and "SECRET" not in repr(caught.value.__cause__)


@pytest.mark.parametrize("url", ["redis://host", "redis://host/", "redis://host:6380/15", "rediss://u:p@host/2",
                                 "unix:///run/redis.sock?db=3", "redis://[::1]:6379/0"])
def test_usable_urls_pass(url: str) -> None:
    assert Settings(redis_url=url).redis_url == url


def test_only_an_unset_orch_redis_url_means_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert redis_url_from_env({}) == DEFAULT_REDIS_URL
    with pytest.raises(ConfigurationError, match="ORCH_REDIS_URL is set but empty"):
        redis_url_from_env({"ORCH_REDIS_URL": ""})
    with pytest.raises(ConfigurationError, match="invalid ORCH_REDIS_URL: the database must be a number"):
        redis_url_from_env({"ORCH_REDIS_URL": "redis://host/abc"})
    monkeypatch.setenv("ORCH_REDIS_URL", "")
    with pytest.raises(ConfigurationError, match="ORCH_REDIS_URL is set but empty") as caught:
        Orchestrator()
    assert caught.value.field == "ORCH_REDIS_URL"
    monkeypatch.setenv("ORCH_REDIS_URL", "not a url")
    with pytest.raises(ConfigurationError, match="invalid ORCH_REDIS_URL: not a usable Redis URL"):
        Orchestrator()
    with pytest.raises(ConfigurationError, match="invalid setting redis_url: it is empty"):
        Orchestrator("")  # an explicit empty URL is not "use the default" either


def test_a_url_given_beside_settings_is_checked_too() -> None:
    with pytest.raises(ConfigurationError, match="the database must be a number"):
        Orchestrator("redis://host/abc", settings=Settings(prefix="p"))
    assert Orchestrator("redis://host/2", settings=Settings(prefix="p")).settings.prefix == "p"


@pytest.mark.parametrize("url", ["redis://host/0?socket_timeout=2&health_check_interval=3",
                                 "rediss://host/0?ssl_cert_reqs=none", "unix:///tmp/r.sock?db=1"])
def test_query_options_redis_py_takes_are_accepted(url: str) -> None:
    assert Settings(redis_url=url).redis_url == url


def test_durability_settings_are_checked_and_give_the_wait_to_send() -> None:
    assert Settings().replication is None  # fast: no WAIT
    assert Settings(durability="replicated").replication == (1, 1000)
    assert Settings(durability="replicated", replicas=2, replica_timeout=0.0014).replication == (2, 1)
    for bad, field in (({"durability": "sync"}, "durability"), ({"replicas": 0}, "replicas"),
                       ({"replica_timeout": 2.0}, "replica_timeout"), ({"replica_timeout": 0}, "replica_timeout")):
        with pytest.raises(ConfigurationError) as info:
            Settings(**bad)  # type: ignore[arg-type]
        assert info.value.field == field
