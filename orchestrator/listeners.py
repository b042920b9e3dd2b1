"""The pub/sub connections ``TaskHandle.result`` waits on, kept for the next wait.

Owns a small pool of idle pub/sub connections per sync client: opening one costs Redis
more than the wait itself (a connection, the client's greeting, its close), so a wait that
ends unsubscribes (SUNSUBSCRIBE, not waited for) and leaves its connection for the next,
at most IDLE_MAX per client. The next waiter skips what the previous one left (its
unsubscribe confirmation, a message that came before it) until its own subscription is
confirmed: Redis answers one connection in order. Only plain connections are kept
(a Cluster client's pub/sub spans nodes: closed after each wait). An asyncio client's are
kept the same way (``asubscribe``, ``arelease``), each with the event loop it belongs to:
only a wait on that loop takes it. A connection read from when its wait was cancelled is
closed, never kept (its reply may be half read). Does not decide when or how long to wait
(``handle``).
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any
from weakref import WeakKeyDictionary

from redis import exceptions as redis_errors
from redis.asyncio.client import PubSub as AsyncPubSub
from redis.client import PubSub

from .reading import text

IDLE_MAX = 8  # idle pub/sub connections kept per client
_idle: WeakKeyDictionary[Any, list[PubSub]] = WeakKeyDictionary()
_aidle: WeakKeyDictionary[Any, list[tuple[asyncio.AbstractEventLoop, AsyncPubSub]]] = WeakKeyDictionary()
_lock = threading.Lock()


def subscribe(client: Any, channel: str, timeout: float) -> Any | None:
    """A pub/sub connection of ``client`` subscribed to the shard channel ``channel``, the
    subscription confirmed within ``timeout`` seconds; None when it cannot be had (no
    rights, no pub/sub, no answer): the caller polls."""
    with _lock:
        idle = _idle.get(client)
        listener: Any = idle.pop() if idle else None
    try:
        if listener is None:
            listener = client.pubsub()
        listener.ssubscribe(channel)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            message = listener.get_sharded_message(timeout=left)
            if message is None:
                break
            if _confirms(message, channel):
                return listener
    except (redis_errors.RedisError, AttributeError, NotImplementedError):
        pass
    if listener is not None:
        listener.close()
    return None


def release(client: Any, listener: Any, channel: str) -> None:
    """A wait on ``channel`` ended: keep its connection for the next one, or close it."""
    if type(listener) is PubSub:
        try:
            listener.sunsubscribe(channel)  # type: ignore[no-untyped-call]
        except redis_errors.RedisError:
            listener.close()
            return
        with _lock:
            idle = _idle.setdefault(client, [])
            if len(idle) < IDLE_MAX:
                idle.append(listener)
                return
    listener.close()


def _confirms(message: Any, channel: str) -> bool:
    """Whether ``message`` is the confirmation of this wait's own subscription (what an
    earlier wait left on a kept connection is not)."""
    return bool(message.get("type") == "ssubscribe" and text(message.get("channel")) == channel)


async def next_message(listener: Any, timeout: float) -> Any:
    """The next message of an asyncio pub/sub connection, or None after ``timeout`` seconds
    (a Cluster client's reads its shard channels' nodes: ``get_sharded_message``)."""
    read = getattr(listener, "get_sharded_message", None) or listener.get_message
    return await read(timeout=timeout)


async def asubscribe(client: Any, channel: str, timeout: float) -> Any | None:
    """``subscribe`` for an asyncio client, on a connection of this event loop; a wait
    cancelled before the confirmation came closes its connection (not left subscribed)."""
    listener: Any = _atake(client, asyncio.get_running_loop())
    try:
        if listener is None:
            listener = client.pubsub()  # (redis-py's async Cluster client has none)
        await listener.ssubscribe(channel)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            message = await next_message(listener, left)
            if message is None:
                break
            if _confirms(message, channel):
                return listener
    except (redis_errors.RedisError, AttributeError, NotImplementedError, RuntimeError):
        pass
    except BaseException:
        if listener is not None:
            await listener.aclose()
        raise
    if listener is not None:
        await listener.aclose()
    return None


def _atake(client: Any, loop: asyncio.AbstractEventLoop) -> AsyncPubSub | None:
    """An idle connection of ``client`` on ``loop``; those of a closed loop are dropped (the
    client's pool disconnects them when it closes)."""
    with _lock:
        idle = _aidle.get(client)
        if not idle:
            return None
        idle[:] = [(owner, listener) for owner, listener in idle if not owner.is_closed()]
        for i, (owner, listener) in enumerate(idle):
            if owner is loop:
                del idle[i]
                return listener
    return None


async def arelease(client: Any, listener: Any, channel: str) -> None:
    """``release`` for an asyncio wait that ended (not inside a read of ``listener``)."""
    if type(listener) is AsyncPubSub:
        try:
            await listener.sunsubscribe(channel)
        except redis_errors.RedisError:
            await listener.aclose()
            return
        except BaseException:  # cancelled again while it unsubscribed
            await listener.aclose()
            raise
        with _lock:
            idle = _aidle.setdefault(client, [])
            if len(idle) < IDLE_MAX:
                idle.append((asyncio.get_running_loop(), listener))
                return
    await listener.aclose()
