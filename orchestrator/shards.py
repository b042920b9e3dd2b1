"""Sharded queues: one logical queue spread over K physical queues, each under its own hash tag.

Owns the shard layout record (``<prefix>:shards``, a hash outside any hash tag: queue ->
JSON ``{"shards": K, "queues": [physical names]}``), declaring it (``app.declare_queue``:
each shard's tag chosen so the K shards sit on as many Redis Cluster masters as there
are; a change of K refused while tasks wait), reading it back defensively, and the
producer's choice of a shard (``ShardRouter``: the hash of ``key``, else of
``unique_key``, else round robin). A physical queue (``hot#0``, ``hot#1-4``: ``keys.shard_queue``)
is an ordinary queue to every script, worker and scheduler; nothing here touches a
task. Does not form key strings (``keys``), claim (``worker``) or sum the shards' views
(``operations``, ``overview``).
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import itertools
import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from redis.crc import key_slot
from redis.exceptions import ResponseError

from .connection import is_cluster
from .errors import ShardingRefused, ValidationError
from .keys import QueueKeys, shard_queue, shards_key, validate_queue_name, validate_stored_name

if TYPE_CHECKING:
    from redis import Redis
    from redis.asyncio import Redis as AsyncRedis

MAX_SHARDS = 64
MAX_SALT = 10_000  # tags tried per shard to land it on the master wanted (a 3-master cluster needs ~3)
UNFINISHED = ("pending", "scheduled", "retrying", "running")  # the states of a task that waits
Layouts = Mapping[str, tuple[str, ...]]  # logical queue -> its physical queues, shard 0 first


@dataclass(frozen=True)
class ShardLayout:
    """A queue's shards: their physical queue names (shard i is ``queues[i]``) and, on a
    Redis Cluster, the master (``host:port``) holding each when it was declared."""

    queue: str
    queues: tuple[str, ...]
    masters: tuple[str, ...] = ()

    @property
    def shards(self) -> int:
        return len(self.queues)


def parse_layouts(raw: Mapping[Any, Any]) -> dict[str, tuple[str, ...]]:
    """The shard record's entries that are well formed; a spoiled entry (written by hand)
    is left out, so its queue reads as unsharded rather than failing every producer."""
    found: dict[str, tuple[str, ...]] = {}
    for name, value in raw.items():
        try:
            queue = validate_queue_name(name.decode() if isinstance(name, bytes) else name)
            data = json.loads(value)
            queues = tuple(validate_stored_name(q) for q in data["queues"])
            if not queues or len(queues) != data["shards"] or len(set(queues)) != len(queues):
                continue
        except (ValueError, TypeError, KeyError, UnicodeDecodeError):
            continue
        found[queue] = queues
    return found


def _wrong_type(exc: ResponseError) -> dict[str, tuple[str, ...]]:
    """A record of another type (written by hand) reads as no sharded queue, as a spoiled entry
    does: producers and workers go on with plain queues rather than fail."""
    if not str(exc).startswith("WRONGTYPE"):
        raise exc
    return {}


def read_layouts(client: Redis, prefix: str) -> dict[str, tuple[str, ...]]:
    try:
        return parse_layouts(client.hgetall(shards_key(prefix)))
    except ResponseError as exc:
        return _wrong_type(exc)


async def aread_layouts(client: AsyncRedis, prefix: str) -> dict[str, tuple[str, ...]]:
    try:
        return parse_layouts(await client.hgetall(shards_key(prefix)))
    except ResponseError as exc:
        return _wrong_type(exc)


async def aread_layouts_of(client: AsyncRedis, prefix: str, queues: list[str]) -> dict[str, tuple[str, ...]]:
    """The layouts of ``queues`` only (one HMGET: a worker's ACL needs no HGETALL)."""
    try:
        values = await client.hmget(shards_key(prefix), queues)
    except ResponseError as exc:
        return _wrong_type(exc)
    return parse_layouts({q: v for q, v in zip(queues, values, strict=True) if v is not None})


def check_shards(shards: object) -> int:
    if isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= MAX_SHARDS:
        raise ValidationError(f"shards must be an integer from 1 to {MAX_SHARDS}, not {shards!r}", field="shards")
    return shards


def choose_queues(client: Redis, queue: str, shards: int, prefix: str) -> ShardLayout:
    """The physical queues of ``shards`` shards of ``queue``. On a standalone Redis simply
    ``queue#0`` .. ``queue#K-1``; on a Redis Cluster shard i goes to the i-th master (sorted by
    address, round robin when K exceeds them): its tag gets the first salt whose CRC16 slot
    that master owns (``queue#i-salt``)."""
    if not is_cluster(client):
        return ShardLayout(queue, tuple(shard_queue(queue, i) for i in range(shards)))
    masters = sorted(node.name for node in client.get_primaries())  # type: ignore[attr-defined]
    nodes = client.nodes_manager  # type: ignore[attr-defined]

    def owner(name: str) -> str:
        return str(nodes.get_node_from_slot(key_slot(QueueKeys(name, prefix).pending.encode())).name)

    chosen: list[str] = []
    for i in range(shards):
        want = masters[i % len(masters)]
        name = next(
            (n for salt in range(MAX_SALT) if owner(n := shard_queue(queue, i, salt)) == want),
            shard_queue(queue, i),
        )
        chosen.append(name)
    return ShardLayout(queue, tuple(chosen), tuple(owner(n) for n in chosen))


def waiting(client: Redis, queues: tuple[str, ...], prefix: str) -> int:
    """Unfinished tasks (pending, scheduled, retrying, running) over ``queues``, one ZCARD each."""
    pipe = client.pipeline(transaction=False)
    for name in queues:
        keys = QueueKeys(name, prefix)
        for state in UNFINISHED:
            pipe.zcard(getattr(keys, state))
    return sum(int(n) for n in pipe.execute())


def declare(client: Redis, queue: str, shards: int, prefix: str) -> ShardLayout:
    """Store ``queue``'s layout of ``shards`` shards (1: a plain queue, the record's entry removed).

    The same K again changes nothing (the stored tags are kept). Another K is refused with
    ShardingRefused while any task of the queue waits, on its shards or, when it was a plain
    queue, in it; else the tags are chosen again. The check and the write are two steps:
    a producer that read the old layout less than ``ShardRouter.REFRESH_S`` ago can still
    enqueue to an old shard in between (its tasks stay visible, under the queue, in
    ``orch status`` and by id; restart workers after changing K)."""
    validate_queue_name(queue)
    check_shards(shards)
    current = read_layouts(client, prefix).get(queue)
    if current is not None and len(current) == shards:
        return ShardLayout(queue, current)
    before = current if current is not None else (queue,)
    if current is None and shards == 1:
        return ShardLayout(queue, (queue,))
    left = waiting(client, before, prefix)
    if left:
        raise ShardingRefused(
            f"queue {queue!r} has {left} unfinished task(s) on {len(before)} shard(s): changing it to "
            f"{shards} shard(s) is refused until they are done (or purged)",
            queue=queue, shards=shards, current=len(before), waiting=left,
        )
    if shards == 1:
        client.hdel(shards_key(prefix), queue)
        return ShardLayout(queue, (queue,))
    layout = choose_queues(client, queue, shards, prefix)
    record = json.dumps({"shards": shards, "queues": list(layout.queues)}, separators=(",", ":"))
    client.hset(shards_key(prefix), queue, record)
    return layout


@dataclass
class ShardRouter:
    """A producer's cached shard layouts and its choice of a shard for each task."""

    REFRESH_S = 1.0  # the layouts are read again this often (before an enqueue, when stale)

    layouts: dict[str, tuple[str, ...]] = field(default_factory=dict)
    read_at: float | None = None
    _turns: dict[str, itertools.count[int]] = field(default_factory=dict)

    def stale(self, now: float) -> bool:
        return self.read_at is None or now - self.read_at >= self.REFRESH_S

    def update(self, layouts: dict[str, tuple[str, ...]], now: float) -> None:
        self.layouts, self.read_at = layouts, now

    def route(self, queue: str, key: str, unique_key: str) -> str:
        """The physical queue for a task of ``queue``: the queue itself unless it is sharded;
        then the shard of the stable hash (CRC32) of ``key``, else of ``unique_key``, else the
        next in turn. Both keys given and different: ValidationError (the two could name
        different shards, and a key must always find its task)."""
        queues = self.layouts.get(queue)
        if queues is None:
            return queue
        if key and unique_key and key != unique_key:
            raise ValidationError(
                f"queue {queue!r} is sharded: give key or unique_key, or the same value to both "
                "(a key must always find its task's shard)",
                queue=queue, field="unique_key",
            )
        chosen = key or unique_key
        if chosen:
            return queues[zlib.crc32(chosen.encode()) % len(queues)]
        turns = self._turns.setdefault(queue, itertools.count())
        return queues[next(turns) % len(queues)]
