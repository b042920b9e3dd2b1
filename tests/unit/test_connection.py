"""connection.py: every accepted URL form read into the client it builds (no server needed)."""

from __future__ import annotations

import pytest
from redis import Redis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.sentinel import SentinelConnectionPool as AsyncSentinelPool
from redis.sentinel import SentinelConnectionPool

from orchestrator.config import redis_url_problem
from orchestrator.connection import async_client, block_limit, is_cluster, parse, sync_client, timeouts


def test_standalone_urls_are_passed_to_redis_py_as_they_stand() -> None:
    assert parse("rediss://h:1/2?ssl_cert_reqs=none").kind == "standalone"
    assert parse("unix:///tmp/redis.sock").kind == "standalone"


def test_cluster_url_lists_its_nodes_and_keeps_credentials_and_tls_options() -> None:
    target = parse("rediss+cluster://user:s%40cret@a:7000,b,[::1]:7002?ssl_cert_reqs=none&socket_timeout=3")
    assert target.kind == "cluster"
    assert target.nodes == (("a", 7000), ("b", 6379), ("::1", 7002))
    assert target.options == {
        "username": "user", "password": "s@cret", "ssl": True, "ssl_cert_reqs": "none", "socket_timeout": 3.0,
    }


def test_sentinel_url_names_its_master_database_and_sentinel_credentials() -> None:
    target = parse("redis+sentinel://:pw@s1,s2:26380/mymaster/3?sentinel_password=spw")
    assert (target.kind, target.nodes, target.master, target.db) == (
        "sentinel", (("s1", 26379), ("s2", 26380)), "mymaster", 3,
    )
    assert target.options == {"password": "pw"}  # the data nodes' password: never the sentinels'
    assert target.sentinel_options == {"password": "spw"}


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+cluster://a:7000/3", "database 0 only"),
        ("redis+cluster://a:x", "not a port number"),
        ("redis+cluster://,b:1", "host is missing"),
        ("redis+sentinel://s1:26379", "master's name"),
        ("redis+sentinel://s1:26379/m/x", "must be a number"),
        ("redis+cluster://a:7000?bogus=1", "'bogus' is not a Redis connection option"),
        ("http://a:7000", "unknown scheme http://"),
    ],
)
def test_bad_cluster_and_sentinel_urls_are_refused_with_one_reason(url: str, problem: str) -> None:
    found = redis_url_problem(url.replace("a:", "u:secret@a:", 1))
    assert found is not None and problem in found
    assert "secret" not in found


def test_timeouts_follow_the_lease_within_bounds() -> None:
    assert timeouts(30.0)["socket_timeout"] == 10.0  # shorter than the lease
    assert timeouts(8.0) == {"socket_timeout": 4.0, "socket_connect_timeout": 4.0, "health_check_interval": 4.0}
    assert timeouts(0.5)["socket_timeout"] == 2.0  # never below the floor: slow replies are not dead sockets
    assert block_limit(30.0) < timeouts(30.0)["socket_timeout"]


def test_clients_get_the_timeouts_and_the_urls_options_win() -> None:
    client = sync_client("redis://127.0.0.1:1/0?socket_timeout=1.5", lease_timeout=8.0)
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["socket_timeout"], kwargs["health_check_interval"]) == (1.5, 4.0)
    client.close()


def test_sentinel_clients_follow_the_named_master() -> None:
    client = sync_client("redis+sentinel://127.0.0.1:1/mymaster/2")
    assert isinstance(client, Redis) and isinstance(client.connection_pool, SentinelConnectionPool)
    assert client.connection_pool.service_name == "mymaster"
    assert not is_cluster(client)
    aclient = async_client("redis+sentinel://127.0.0.1:1/mymaster/2")
    assert isinstance(aclient.connection_pool, AsyncSentinelPool)


def test_async_cluster_client_is_built_without_connecting() -> None:
    client = async_client("redis+cluster://127.0.0.1:1,127.0.0.1:2")
    assert isinstance(client, AsyncRedisCluster) and is_cluster(client)
