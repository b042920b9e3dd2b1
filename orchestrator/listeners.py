"""The pub/sub connections ``TaskHandle.result`` waits on, kept for the next wait.

Owns a small pool of idle pub/sub connections per sync client: opening one costs Redis
more than the wait itself (a connection, the client's greeting, its close), so a wait that
ends unsubscribes (SUNSUBSCRIBE, not waited for) and leaves its connection for the next,
at most IDLE_MAX per client. The next waiter skips what the previous one left (its
unsubscribe confirmation, a message that came before it) until its own subscription is
confirmed: Redis answers one connection in order. Only plain connections are kept
(a Cluster client's pub/sub spans nodes: closed after each wait); asyncio waits open their
own (a connection belongs to one event loop). Does not decide when or how long to wait
(``handle``).
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import threading
import time
from typing import Any
from weakref import WeakKeyDictionary

from redis import exceptions as redis_errors
from redis.client import PubSub

from .reading import text

IDLE_MAX = 8  # idle pub/sub connections kept per client
_idle: WeakKeyDictionary[Any, list[PubSub]] = WeakKeyDictionary()
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
            if message.get("type") == "ssubscribe" and text(message.get("channel")) == channel:
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
