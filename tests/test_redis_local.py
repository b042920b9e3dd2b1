"""``orchestrator.redis_local``: the one redis-server launcher of the demo, tests, soak and benchmarks."""

from __future__ import annotations

import socket

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from orchestrator import redis_local
from orchestrator.errors import ConfigurationError
from orchestrator.redis_local import LocalRedis, free_port


def no_retry(port: int) -> redis.Redis:
    return redis.Redis(port=port, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))


def test_kill_then_start_comes_back_on_the_same_port_with_its_append_only_file() -> None:
    server = LocalRedis(extra=("--appendfsync", "always")).start()
    try:
        port, directory = server.port, server.dir
        client = no_retry(port)
        client.set("kept", "1")
        server.kill()
        assert directory is not None and directory.is_dir(), "kill -9 keeps the data directory"
        with pytest.raises(redis.ConnectionError):
            client.ping()
        server.start()
        assert (server.port, server.dir) == (port, directory)
        assert client.get("kept") == b"1"
        client.close()
    finally:
        server.stop()
    assert server.dir is None and not directory.exists()
    with pytest.raises(redis.ConnectionError):
        no_retry(port).ping()


def test_extra_arguments_win_and_ready_url_is_what_must_answer() -> None:
    server = LocalRedis(appendonly=False, extra=("--requirepass", "pw", "--maxmemory-policy", "allkeys-lru"))
    server.ready_url = f"redis://:pw@127.0.0.1:{server.port}/0"
    with server:
        client = redis.Redis.from_url(server.ready_url)
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "allkeys-lru"}
        assert client.config_get("appendonly") == {"appendonly": "no"}
        client.close()


def test_a_server_that_cannot_start_says_why_and_leaves_nothing() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = LocalRedis(port=taken.getsockname()[1])
        directory = server.dir
        with pytest.raises(ConfigurationError, match=r"redis-server did not start: .*(Address already in use|bind)"):
            server.start()
    assert server.dir is None and directory is not None and not directory.exists()
    assert server.proc is not None and server.proc.poll() is not None


def test_free_port_is_never_the_machines_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    ports = iter([6379, 6379, 40001])

    class FakeSocket:
        def __enter__(self) -> FakeSocket:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def bind(self, address: tuple[str, int]) -> None:
            self.port = next(ports)

        def getsockname(self) -> tuple[str, int]:
            return ("127.0.0.1", self.port)

    monkeypatch.setattr(redis_local.socket, "socket", FakeSocket)
    assert free_port() == 40001
