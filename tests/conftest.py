from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from orchestrator import Orchestrator, Settings
from tests.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def r(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client on the private server, with the database emptied before each test."""
    client = redis.Redis(port=redis_server.port)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def app(r: redis.Redis, redis_server: RedisServer) -> Iterator[Orchestrator]:
    orch = Orchestrator(settings=Settings(redis_url=redis_server.url))
    yield orch
    orch.close()
