"""Sending script calls to a Redis Cluster: each call to the master that owns its slot.

Owns routing a batch of calls by the slot of each call's first key (a script's KEYS[1],
a plain command's first argument; a keyless command such as TIME goes to the default
node), one packed write per master, all written before any reply is read (one round trip
per master, in parallel); following MOVED (the slot map is updated) and ASK (the call is
sent again behind ASKING on the node named); loading a script on the node that answered
NOSCRIPT (a promoted replica starts with an empty cache); refreshing the slot map when a
node is unreachable or the cluster is down. Every call touches one queue's hash tag, so
one slot. Does not decide what a reply means nor when to resend after a lost connection:
the exchange it is given does (``script_calls``, whose standalone path stays as it was).
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    NoScriptError,
    RedisClusterException,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from .reading import UNREACHABLE

if TYPE_CHECKING:
    from .script_calls import Call

REFRESH_ERRORS = (ClusterDownError, TryAgainError)  # the slot map may be stale: read it again


class Exchange(Protocol):
    """What ``script_calls._Exchange`` offers the cluster path."""

    calls: Sequence[Call[Any]]
    todo: list[int]

    @property
    def done(self) -> bool: ...
    def begin_pass(self) -> None: ...
    def pack(self, indices: Sequence[int], asking: Sequence[int] = ()) -> bytes: ...
    def settle(self, i: int, reply: Any) -> None: ...
    def lost(self, exc: Exception) -> None: ...
    @property
    def wait_command(self) -> bytes: ...  # WAIT after each master's calls (durability replicated), or b""
    def settle_wait(self, reply: Any) -> None: ...


def route_key(call: Call[Any]) -> str | bytes | None:
    """The key whose slot a call goes to: a script's first key, a command's first argument."""
    if call.script is not None:
        return call.keys[0] if call.keys else None
    if len(call.args) > 1 and isinstance(call.args[1], str | bytes):
        return call.args[1]
    return None


def _reply(read: Callable[[], Any]) -> Any:
    try:
        return read()
    except ResponseError as exc:
        return exc


class _Pass:
    """One pass's bookkeeping: the calls to send again, the scripts each node lacks."""

    def __init__(self) -> None:
        self.redo: list[int] = []
        self.asking: dict[int, tuple[str, int]] = {}  # call -> the node an ASK named
        self.moved: list[AskError] = []
        self.missing: dict[Any, set[str]] = {}  # node -> sources it answered NOSCRIPT for
        self.refresh = False
        self.failure: Exception | None = None

    def reply(self, exchange: Exchange, node: Any, i: int, reply: Any) -> None:
        if isinstance(reply, MovedError):
            self.moved.append(reply)
            self.redo.append(i)
        elif isinstance(reply, AskError):
            self.asking[i] = (reply.host, reply.port)
            self.redo.append(i)
        elif isinstance(reply, NoScriptError):
            script = exchange.calls[i].script
            assert script is not None
            self.missing.setdefault(node, set()).add(script.source)
            self.redo.append(i)
        else:
            if isinstance(reply, REFRESH_ERRORS):
                self.refresh = True
            exchange.settle(i, reply)

    def unreachable(self, exchange: Exchange, exc: Exception, unsettled: Sequence[int]) -> None:
        """A node failed mid-pass: its unsettled calls are resent once if the exchange allows."""
        self.refresh = True
        if self.failure is None:
            self.failure = exc
        self.redo.extend(unsettled)

    def end(self, exchange: Exchange) -> None:
        if self.failure is not None:
            exchange.lost(self.failure)  # raises unless every call may be resent
        exchange.todo = sorted(set(self.redo))


def _groups(nodes: Callable[[str | bytes | None], Any], exchange: Exchange) -> dict[Any, list[int]]:
    groups: dict[Any, list[int]] = {}
    for i in exchange.todo:
        try:
            node = nodes(route_key(exchange.calls[i]))
        except (SlotNotCoveredError, RedisClusterException) as exc:
            raise RedisConnectionError(f"Redis Cluster: {exc}") from exc
        groups.setdefault(node, []).append(i)
    return groups


def run_many(client: RedisCluster, exchange: Exchange) -> None:
    """Send the exchange's calls over ``client``'s masters until each has its result."""
    asking: dict[int, tuple[str, int]] = {}
    manager = client.nodes_manager

    def node_of(key: str | bytes | None) -> ClusterNode:
        if key is None:
            return client.get_default_node()  # type: ignore[no-any-return, no-untyped-call]
        return manager.get_node_from_slot(client.keyslot(key))  # type: ignore[no-untyped-call]

    while not exchange.done:
        exchange.begin_pass()
        groups = _groups(node_of, exchange)
        for i, (host, port) in asking.items():  # an ASK goes to the node it named, this once
            groups[node_of(route_key(exchange.calls[i]))].remove(i)
            target = manager.get_node(host=host, port=port) or ClusterNode(host, port)  # type: ignore[no-untyped-call]
            groups.setdefault(target, []).append(i)
        state = _Pass()
        sent = []
        for node, indices in groups.items():
            pool = client.get_redis_connection(node).connection_pool
            conn = pool.get_connection()
            try:
                packed = exchange.pack(indices, [i for i in indices if i in asking]) + exchange.wait_command
                conn.send_packed_command([packed])  # type: ignore[no-untyped-call]
                sent.append((node, indices, pool, conn))
            except UNREACHABLE as exc:
                conn.disconnect()  # type: ignore[no-untyped-call]
                pool.release(conn)
                state.unreachable(exchange, exc, indices)
        for k, (node, indices, pool, conn) in enumerate(sent):
            done = 0
            try:
                for i in indices:
                    if i in asking:
                        _reply(conn.read_response)  # ASKING's +OK
                    state.reply(exchange, node, i, _reply(conn.read_response))
                    done += 1
                if exchange.wait_command:  # WAIT counts the replicas of this master that have the writes
                    exchange.settle_wait(_reply(conn.read_response))
            except UNREACHABLE as exc:
                conn.disconnect()  # type: ignore[no-untyped-call]
                state.unreachable(exchange, exc, indices[done:])
            except BaseException:
                conn.disconnect()  # type: ignore[no-untyped-call]  # half-read: not back to the pool
                for _, _, other_pool, other in sent[k + 1:]:  # unread, the other masters' too
                    other.disconnect()  # type: ignore[no-untyped-call]
                    other_pool.release(other)
                raise
            finally:
                pool.release(conn)
        for moved in state.moved:
            manager.move_slot(moved)
        if state.refresh:
            with contextlib.suppress(Exception):  # the next call meets the outage if it lasts
                manager.initialize()
        for node, sources in state.missing.items():
            for source in sources:
                client.get_redis_connection(node).script_load(source)
        asking = state.asking
        state.end(exchange)


async def arun_many(client: AsyncRedisCluster, exchange: Exchange) -> None:
    """``run_many`` for an asyncio cluster client."""
    try:
        await client.initialize()  # a no-op once the slot map is read
    except RedisClusterException as exc:  # not a RedisError: the callers' backoff would not know it
        raise RedisConnectionError(f"Redis Cluster: {exc}") from exc
    asking: dict[int, tuple[str, int]] = {}
    manager = client.nodes_manager

    def node_of(key: str | bytes | None) -> AsyncClusterNode:
        if key is None:
            return client.get_default_node()
        return manager.get_node_from_slot(client.keyslot(key))

    while not exchange.done:
        exchange.begin_pass()
        groups = _groups(node_of, exchange)
        for i, (host, port) in asking.items():
            groups[node_of(route_key(exchange.calls[i]))].remove(i)
            target = manager.get_node(host=host, port=port) or AsyncClusterNode(host, port)
            groups.setdefault(target, []).append(i)
        state = _Pass()
        sent = []
        for node, indices in groups.items():
            conn = node.acquire_connection()
            try:
                await conn.send_packed_command([exchange.pack(indices, [i for i in indices if i in asking])
                                                + exchange.wait_command])
                sent.append((node, indices, conn))
            except UNREACHABLE as exc:
                await conn.disconnect()
                node.release(conn)
                state.unreachable(exchange, exc, indices)
        for k, (node, indices, conn) in enumerate(sent):
            done = 0
            try:
                for i in indices:
                    if i in asking:
                        await _aread(conn)
                    state.reply(exchange, node, i, await _aread(conn))
                    done += 1
                if exchange.wait_command:
                    exchange.settle_wait(await _aread(conn))
            except UNREACHABLE as exc:
                await conn.disconnect()
                state.unreachable(exchange, exc, indices[done:])
            except BaseException:  # (a cancel included)
                await conn.disconnect()
                for other_node, _, other in sent[k + 1:]:  # unread, the other masters' too
                    await other.disconnect()
                    other_node.release(other)
                raise
            finally:
                node.release(conn)
        for moved in state.moved:
            await manager.move_slot(moved)
        if state.refresh:
            with contextlib.suppress(Exception):
                await manager.initialize()
        for node, sources in state.missing.items():
            for source in sources:
                await node.execute_command("SCRIPT", "LOAD", source)
        asking = state.asking
        state.end(exchange)


async def _aread(conn: Any) -> Any:
    try:
        return await conn.read_response()
    except ResponseError as exc:
        return exc
