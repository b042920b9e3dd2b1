"""The contract suite's backends: every test here runs on a real redis-server and on fakeredis.

Owns the ``backend`` fixture (``redis``: the session's private redis-server; ``fakeredis``:
the in-process fake of ``fakeredis://NAME``, orchestrator/fakes.py) and the ``r`` and
``app`` fixtures of tests/conftest.py rebuilt on it, so every per-module fixture built on
``r`` runs on both. A difference between fakeredis and Redis is a failing test, or a
limit of fakeredis marked with ``fakeredis_limit`` (an xfail that must fail: a fakeredis
release that fixes it shows up) and listed in the README ("On fakeredis").
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


@dataclass(frozen=True)
class Backend:
    name: str  # "redis" or "fakeredis"
    url: str

    @property
    def fake(self) -> bool:
        return self.name == "fakeredis"


@pytest.fixture(params=["redis", "fakeredis"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "redis":
        return Backend("redis", request.getfixturevalue("redis_server").url)
    problem = fakes.missing()
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    return Backend("fakeredis", FAKE_URL)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """On fakeredis, a test marked ``fakeredis_limit(reason)`` must fail (strict xfail) and one
    marked ``fakeredis_slow`` is ``slow`` (its Redis run stays in the quick loop)."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None or callspec.params.get("backend") != "fakeredis":
            continue
        limit = item.get_closest_marker("fakeredis_limit")
        if limit is not None:
            item.add_marker(pytest.mark.xfail(strict=True, reason=f"fakeredis: {limit.args[0]}"))
        if item.get_closest_marker("fakeredis_slow") is not None:
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def r(backend: Backend) -> Iterator[redis.Redis]:
    """A client of the backend, with the database emptied before each test."""
    client = sync_client(backend.url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def app(r: redis.Redis, backend: Backend) -> Iterator[Orchestrator]:
    orch = Orchestrator(settings=Settings(redis_url=backend.url))
    yield orch
    orch.close()
