"""The contract suite's backends: every test here runs on a real redis-server, on fakeredis
and on a local Redis Cluster.

Owns the ``backend`` fixture (``redis``: the session's private redis-server; ``fakeredis``:
the in-process fake of ``fakeredis://NAME``, orchestrator/fakes.py) and the ``r`` and
``app`` fixtures of tests/conftest.py rebuilt on it, so every per-module fixture built on
``r`` runs on both. A difference between fakeredis and Redis is a failing test, or a
limit of fakeredis marked with ``fakeredis_limit`` (an xfail that must fail: a fakeredis
release that fixes it shows up) and listed in the README ("On fakeredis"). ``cluster``: the
session's local Redis Cluster (3 masters, 3 replicas; tests/conftest.py ``redis_cluster``),
where every script call is routed by its queue's slot; a test that cannot mean anything
there (it counts one server's commands, or runs a test-only script on undeclared keys) is
marked ``cluster_skip(reason)``, and the modules in ``NOT_ON_CLUSTER`` (no routing in them)
run on the two others only, to keep the cluster's share of the suite small.
Does not start redis-server (tests/conftest.py) nor cover the integration tests, which
need real processes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis

from orchestrator import Orchestrator, Settings, fakes
from orchestrator.connection import sync_client

FAKE_URL = "fakeredis://tests-lua"
# Modules whose tests send no call a cluster would route differently: pure source checks,
# and a Hypothesis search over read_task run as a test-only script on an undeclared key.
NOT_ON_CLUSTER = ("test_script_sources.py", "test_fast_paths.py")


@dataclass(frozen=True)
class Backend:
    name: str  # "redis", "fakeredis" or "cluster"
    url: str

    @property
    def fake(self) -> bool:
        return self.name == "fakeredis"


    @property
    def cluster(self) -> bool:
        return self.name == "cluster"


@pytest.fixture(params=["redis", "fakeredis", "cluster"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "redis":
        return Backend("redis", request.getfixturevalue("redis_server").url)
    if request.param == "cluster":
        return Backend("cluster", request.getfixturevalue("redis_cluster").url)
    problem = fakes.missing()
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    return Backend("fakeredis", FAKE_URL)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On fakeredis, a test marked ``fakeredis_limit(reason)`` must fail (strict xfail) and one
    marked ``fakeredis_slow`` is ``slow`` (its Redis run stays in the quick loop). On the
    cluster, ``cluster_skip(reason)`` skips; the modules of NOT_ON_CLUSTER are not run."""
    dropped = [item for item in items if _backend(item) == "cluster" and item.path.name in NOT_ON_CLUSTER]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item not in set(dropped)]
    for item in items:
        if _backend(item) == "cluster" and (skip := item.get_closest_marker("cluster_skip")) is not None:
            item.add_marker(pytest.mark.skip(reason=f"on Redis Cluster: {skip.args[0]}"))
        if _backend(item) != "fakeredis":
            continue
        limit = item.get_closest_marker("fakeredis_limit")
        if limit is not None:
            item.add_marker(pytest.mark.xfail(strict=True, reason=f"fakeredis: {limit.args[0]}"))
        if item.get_closest_marker("fakeredis_slow") is not None:
            item.add_marker(pytest.mark.slow)


def _backend(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    return None if callspec is None else callspec.params.get("backend")


_CLUSTER_CLIENTS: dict[str, redis.Redis] = {}  # one per cluster URL: building one costs ~40 ms (CLUSTER SLOTS, COMMAND)


def _cluster_client(url: str) -> redis.Redis:
    if url not in _CLUSTER_CLIENTS:
        _CLUSTER_CLIENTS[url] = sync_client(url)
    return _CLUSTER_CLIENTS[url]


@pytest.fixture
def r(backend: Backend) -> Iterator[redis.Redis]:
    """A client of the backend, with the database emptied before each test (every master's);
    on the cluster the session's one client (kept open)."""
    client = _cluster_client(backend.url) if backend.cluster else sync_client(backend.url)
    client.flushdb()
    yield client
    if not backend.cluster:
        client.close()


@pytest.fixture
def app(r: redis.Redis, backend: Backend) -> Iterator[Orchestrator]:
    orch = Orchestrator(settings=Settings(redis_url=backend.url))
    if backend.cluster:
        orch._redis = r  # the session's client: the test reads what the app wrote through it anyway
    yield orch
    if backend.cluster:
        orch._redis = None  # not closed: the next test uses it
    orch.close()
