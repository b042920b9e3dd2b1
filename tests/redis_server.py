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
    snapshots before and after a call prove the call changed nothing.

    A hash or set is taken by its content, not its DUMP: a large one is a hash table,
    which a mere read may rehash a step, reordering DUMP's bytes with nothing changed."""
    return {key: (r.type(key), _value(r, key), r.pttl(key) >= 0) for key in r.scan_iter(count=1000)}


def _value(r: redis.Redis, key: bytes) -> object:
    kind = r.type(key)
    if kind == b"hash":
        return sorted(r.hgetall(key).items())
    if kind == b"set":
        return sorted(r.smembers(key))
    return r.dump(key)
