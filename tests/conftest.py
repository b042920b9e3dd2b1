from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from orchestrator import Orchestrator, Settings
from orchestrator.redis_local import LocalCluster, LocalRedis


@pytest.fixture(scope="session")
def redis_server() -> Iterator[LocalRedis]:
    server = LocalRedis(appendonly=False).start()
    yield server
    server.stop()


@pytest.fixture
def r(redis_server: LocalRedis) -> Iterator[redis.Redis]:
    """A client on the private server, with the database emptied before each test."""
    client = redis.Redis(port=redis_server.port)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def app(r: redis.Redis, redis_server: LocalRedis) -> Iterator[Orchestrator]:
    orch = Orchestrator(settings=Settings(redis_url=redis_server.url))
    yield orch
    orch.close()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalCluster]:
    """One local Redis Cluster (3 masters, 3 replicas) for the whole session: ~6 s to start."""
    cluster = LocalCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture
def cluster(redis_cluster: LocalCluster) -> LocalCluster:
    """The session's cluster, every master emptied before the test."""
    redis_cluster.flush()
    return redis_cluster


@pytest.fixture
def capp(cluster: LocalCluster) -> Iterator[Orchestrator]:
    """An Orchestrator on the emptied session cluster."""
    orch_app = Orchestrator(settings=Settings(redis_url=cluster.url))
    yield orch_app
    orch_app.close()
