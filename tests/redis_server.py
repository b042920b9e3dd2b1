"""Test helpers around the private redis-server: byte snapshots of a database.

The server itself is ``orchestrator.redis_local.LocalRedis``, the one launcher the demo,
the tests, the chaos soak and the benchmarks share (free port, never 6379; kill -9 and
restart on the same append-only file). ``RedisServer`` is its old name here, kept so
tests written against it still import.
"""

from __future__ import annotations

import redis

from orchestrator.redis_local import LocalRedis, free_port

RedisServer = LocalRedis

__all__ = ["LocalRedis", "RedisServer", "free_port", "snapshot"]


def snapshot(r: redis.Redis) -> dict[object, object]:
    """Every key with its type, serialized value and whether it has a TTL: equal
    snapshots before and after a call prove the call changed nothing."""
    return {key: (r.type(key), r.dump(key), r.pttl(key) >= 0) for key in r.scan_iter(count=1000)}
