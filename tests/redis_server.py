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


def late_count(snap: dict[object, object], metrics_key: str) -> int:
    """The metrics field ``late`` in a snapshot (0 when absent, or the key is not a hash)."""
    entry = snap.get(metrics_key.encode())
    if not isinstance(entry, tuple) or entry[0] != b"hash":
        return 0
    return next((int(v) for f, v in entry[1] if f == b"late"), 0)


def without_late(snap: dict[object, object], metrics_key: str) -> dict[object, object]:
    """A snapshot without the metrics field ``late``: the one counter a refusal may change
    (complete and fail count a LEASE_LOST there). A hash left empty is left out."""
    key = metrics_key.encode()
    entry = snap.get(key)
    if not isinstance(entry, tuple) or entry[0] != b"hash":
        return snap
    fields = [(f, v) for f, v in entry[1] if f != b"late"]
    rest = {k: v for k, v in snap.items() if k != key}
    if fields:
        rest[key] = (entry[0], fields, entry[2])
    return rest
