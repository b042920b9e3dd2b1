"""Building Redis clients: the one place a redis-py client is made from a URL.

Owns reading every URL form orchestrator accepts and the options every client gets:

- ``redis://``, ``rediss://`` (TLS), ``unix://``: one standalone Redis.
- ``redis+cluster://h1:p1,h2:p2`` and ``rediss+cluster://``: a Redis Cluster, found from
  any of the listed nodes (a ``RedisCluster`` client, typed as ``Redis``: it answers the
  same commands; ``is_cluster`` tells the few callers that must route by slot).
- ``redis+sentinel://s1:26379,s2:26379/MASTER/DB`` (and ``rediss+sentinel://``): the
  master Sentinel names MASTER, followed across failovers.

The password and user in a URL are the data nodes'; query parameters are connection
options (``socket_timeout``, ``ssl_ca_certs``, ``ssl_cert_reqs`` ...), the URL's win over
ours; for Sentinel, ``sentinel_username`` / ``sentinel_password`` are the sentinels' own.
Socket and health-check timeouts follow the lease (``timeouts``): a hung connection is
dropped before the lease it protects expires. Maintenance notifications are off: redis-py
6+ asks every new connection to enable them (a Redis 8 / Enterprise feature) and logs the
error of every server without the command; orchestrator needs nothing from them.
Does not check URLs for users (``config`` does, through ``parse``) nor choose which Redis
to use (callers pass the URL). See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.cluster import ClusterNode, RedisCluster
from redis.connection import parse_url
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException
from redis.maint_notifications import MaintNotificationsConfig
from redis.sentinel import Sentinel

STANDALONE_SCHEMES = ("redis", "rediss", "unix")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
SCHEMES = STANDALONE_SCHEMES + CLUSTER_SCHEMES + SENTINEL_SCHEMES
DEFAULT_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379
SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password")
# Timeouts, seconds: at most half the lease, but never so short that a loaded machine's
# slow reply (a reap of 500 tasks) reads as a dead connection.
MIN_SOCKET_TIMEOUT = 2.0
MAX_SOCKET_TIMEOUT = 10.0
CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True)
class Target:
    """A parsed URL: the kind of deployment, its nodes and the connection options."""

    kind: str  # "standalone", "cluster" or "sentinel"
    url: str  # standalone: the URL itself
    nodes: tuple[tuple[str, int], ...] = ()  # cluster nodes or sentinels
    master: str = ""  # sentinel: the master's name
    db: int = 0
    options: dict[str, Any] = field(default_factory=dict)  # from the query, typed by redis-py
    sentinel_options: dict[str, Any] = field(default_factory=dict)


def scheme_of(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def parse(url: str) -> Target:
    """``url`` read as one of the accepted forms; ValueError (never repeating the URL, it may
    hold a password) when it is none of them."""
    scheme = scheme_of(url)
    if scheme in STANDALONE_SCHEMES:
        return Target("standalone", url)
    if scheme not in CLUSTER_SCHEMES + SENTINEL_SCHEMES:
        raise ValueError(f"unknown scheme {scheme + '://' if scheme else '(none)'}; use one of "
                         + ", ".join(f"{s}://" for s in SCHEMES))
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    sentinel = scheme in SENTINEL_SCHEMES
    nodes = tuple(_node(h, DEFAULT_SENTINEL_PORT if sentinel else DEFAULT_PORT) for h in hosts.split(","))
    # One node's URL, the query kept: redis-py types the options as for any Redis URL.
    tls = scheme.startswith("rediss")
    single = f"{'rediss' if tls else 'redis'}://{userinfo + '@' if userinfo else ''}{nodes[0][0]}:{nodes[0][1]}"
    query = [(k, v) for k, v in _query(parts.query) if k not in SENTINEL_OPTIONS]
    extra = {k: unquote(v) for k, v in _query(parts.query) if k in SENTINEL_OPTIONS}
    options = parse_url(single + ("?" + "&".join(f"{k}={v}" for k, v in query) if query else ""))  # type: ignore[no-untyped-call]
    for key in ("host", "port", "connection_class"):
        options.pop(key, None)
    if tls:
        options["ssl"] = True
    path = [p for p in parts.path.split("/") if p]
    if not sentinel:
        if path not in ([], ["0"]) or options.pop("db", 0) != 0:
            raise ValueError("a cluster has database 0 only: end the URL with the hosts (or /0)")
        return Target("cluster", url, nodes, options=options)
    if not path or len(path) > 2:
        raise ValueError("give the master's name after the sentinels: redis+sentinel://s1:26379,s2:26379/MASTER/0")
    if len(path) == 2 and not path[1].isdigit():
        raise ValueError(f"the database must be a number after the master's name, not {path[1]!r}")
    db = int(path[1]) if len(path) == 2 else int(options.pop("db", 0))
    options.pop("db", None)
    sentinel_options = {k.removeprefix("sentinel_"): v for k, v in extra.items()}
    return Target("sentinel", url, nodes, unquote(path[0]), db, options, sentinel_options)


def _query(query: str) -> list[tuple[str, str]]:
    return [(k, v) for k, _, v in (p.partition("=") for p in query.split("&") if p)]


def _node(text: str, default_port: int) -> tuple[str, int]:
    host, sep, port = text.strip().rpartition(":")
    if not sep:
        host, port = text.strip(), str(default_port)
    host = host.strip("[]")
    if not host:
        raise ValueError("a host is missing in the list of nodes (h1:6379,h2:6379)")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"the port of {host} is not a port number")
    return host, int(port)


def timeouts(lease_timeout: float | None) -> dict[str, float]:
    """Socket, connect and health-check timeouts for clients serving leases of ``lease_timeout`` s."""
    if lease_timeout is None:
        socket = MAX_SOCKET_TIMEOUT
    else:
        socket = min(MAX_SOCKET_TIMEOUT, max(MIN_SOCKET_TIMEOUT, lease_timeout / 2))
    return {
        "socket_timeout": socket,
        "socket_connect_timeout": min(CONNECT_TIMEOUT, socket),
        "health_check_interval": socket,
    }


def block_limit(lease_timeout: float | None) -> float:
    """The longest a blocking command (BLPOP) may wait: below the socket timeout, so that the
    wait ends on Redis's answer, not on the socket's."""
    return timeouts(lease_timeout)["socket_timeout"] / 2


def _defaults(lease_timeout: float | None) -> dict[str, Any]:
    return {**timeouts(lease_timeout), "maint_notifications_config": MaintNotificationsConfig(enabled=False)}


def sync_client(url: str, lease_timeout: float | None = None) -> Redis:
    """A client of the Redis at ``url`` (standalone and Sentinel connect on first use; a
    cluster client reads the slot map at once)."""
    if url.startswith("fakeredis://"):  # an in-process fake (tests): fakes.py, imported only then
        from . import fakes

        return fakes.sync_client(url)
    target = parse(url)
    if target.kind == "standalone":
        return Redis.from_url(url, **_defaults(lease_timeout))
    options = _defaults(lease_timeout) | target.options  # the URL's options win
    if target.kind == "cluster":
        nodes = [ClusterNode(host, port) for host, port in target.nodes]  # type: ignore[no-untyped-call]
        try:
            return cast(Redis, RedisCluster(startup_nodes=nodes, **options))
        except RedisClusterException as exc:  # not a RedisError: callers would not know it as "unreachable"
            raise RedisConnectionError(f"no node of the Redis Cluster answered ({len(nodes)} listed): {exc}") from exc
    options.pop("maint_notifications_config")
    sentinel = Sentinel(list(target.nodes), sentinel_kwargs=_sentinel_kwargs(target, options), **options)  # type: ignore[no-untyped-call, unused-ignore]
    return cast(Redis, sentinel.master_for(target.master, db=target.db))  # type: ignore[no-untyped-call, unused-ignore]


def async_client(url: str, lease_timeout: float | None = None) -> AsyncRedis:
    """An asyncio client of the Redis at ``url`` (connections are made on first use)."""
    if url.startswith("fakeredis://"):  # an in-process fake (tests): fakes.py, imported only then
        from . import fakes

        return fakes.async_client(url)
    target = parse(url)
    if target.kind == "standalone":
        return AsyncRedis.from_url(url, **_defaults(lease_timeout))
    options = _defaults(lease_timeout) | target.options
    if target.kind == "cluster":
        nodes = [AsyncClusterNode(host, port) for host, port in target.nodes]
        return cast(AsyncRedis, AsyncRedisCluster(startup_nodes=nodes, **options))
    options.pop("maint_notifications_config")
    sentinel = AsyncSentinel(  # type: ignore[no-untyped-call, unused-ignore]
        list(target.nodes), sentinel_kwargs=_sentinel_kwargs(target, options), **options
    )
    return cast(AsyncRedis, sentinel.master_for(target.master, db=target.db))


def _sentinel_kwargs(target: Target, options: dict[str, Any]) -> dict[str, Any]:
    """The sentinels' own connection options: the sockets' and TLS of the data nodes, the
    sentinels' credentials (never the data nodes' password)."""
    shared = {k: v for k, v in options.items() if k.startswith(("socket_", "ssl"))}
    return shared | target.sentinel_options


def is_cluster(client: Redis | AsyncRedis) -> bool:
    """Whether ``client`` is a Redis Cluster client, sync or asyncio (calls must then be routed
    by slot). Every script call asks: decided once per client class, as isinstance against
    redis-py's cluster classes walks their typing.Protocol bases (about 5 us, 5% of a round trip)."""
    return _cluster_class(client.__class__)


@functools.cache
def _cluster_class(kind: type) -> bool:
    return issubclass(kind, RedisCluster | AsyncRedisCluster)


def wake_groups(client: Redis | AsyncRedis, keys: list[str]) -> list[list[str]]:
    """``keys`` split into groups a blocking command may wait on together: one group on a
    standalone Redis; on a Redis Cluster one per slot (a command must not cross slots)."""
    if not is_cluster(client):
        return [keys]
    groups: dict[int, list[str]] = {}
    for key in keys:
        groups.setdefault(key_slot(key.encode()), []).append(key)
    return list(groups.values())


def node_client(client: Redis, key: str) -> Redis:
    """The client of the one Redis holding ``key``: ``client`` itself unless it is a cluster
    client (then the master owning the key's slot), for commands that walk one node (SCAN)."""
    if isinstance(client, RedisCluster):
        node = client.get_node_from_key(key)
        return client.get_redis_connection(node)
    return client


async def aready(client: AsyncRedis) -> None:
    """Read an asyncio cluster client's slot map now (its pub/sub cannot find a node before);
    nothing to do for other clients. RedisClusterException leaves as a ConnectionError."""
    if isinstance(client, AsyncRedisCluster):
        try:
            await client.initialize()
        except RedisClusterException as exc:
            raise RedisConnectionError(f"Redis Cluster: {exc}") from exc
