"""What an adapter gives the harness (``Producer``, ``Adapter``) and two base classes for it.

Owns the enqueue side of the adapter contract: ``SyncProducer`` for a library whose
enqueue is a plain call, ``AsyncProducer`` for an asyncio one, so that every library is
driven by the same loop. Does not measure anything (``_common.Bench`` does).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

# ------------------------------------------------------------------------- adapter contract


class Producer(Protocol):
    """What an adapter gives the harness; ``kind`` is "noop", "sleep" (10 ms) or "incr" (one Redis
    request of its own, ``_roundtrip``)."""

    bulk: bool  # whether the library has a bulk-enqueue API

    def each(self, kind: str, n: int) -> None: ...  # n enqueues, one call each

    def many(self, kind: str, n: int) -> None: ...  # n enqueues through the bulk API

    def one(self, kind: str) -> None: ...  # a single enqueue (latency)

    def close(self) -> None: ...


class Adapter(Protocol):
    VARIANTS: dict[str, str]

    def producer(self, url: str, variant: str) -> Producer: ...

    def worker_argv(self, variant: str, mode: str) -> list[str] | str: ...  # argv, or why n/a


T = TypeVar("T")


class SyncProducer:
    """A ``Producer`` for a library whose enqueue is a plain call.

    A subclass supplies ``enqueuer(kind)``; ``each`` binds it once and loops over bare calls,
    so every library pays the same loop. No bulk API unless a subclass sets ``bulk`` and
    overrides ``many``; ``close`` is the hook for releasing the library's client.
    """

    bulk = False

    def __init__(self, url: str, variant: str) -> None:
        pass

    def enqueuer(self, kind: str) -> Callable[[], object]:
        """The zero-argument callable that enqueues one task of ``kind``."""
        raise NotImplementedError

    def each(self, kind: str, n: int) -> None:
        enqueue = self.enqueuer(kind)
        for _ in range(n):
            enqueue()

    def many(self, kind: str, n: int) -> None:
        raise NotImplementedError

    def one(self, kind: str) -> None:
        self.enqueuer(kind)()

    def close(self) -> None:
        pass


class AsyncProducer:
    """A ``Producer`` for an asyncio library, on an event loop of its own.

    A subclass supplies ``enqueuer(kind)``, the coroutine function enqueuing one task; ``each``
    awaits it n times within one ``run_until_complete``. ``run`` is for the subclass's own
    set-up and bulk calls; ``aclose`` releases the library's client before the loop closes.
    """

    bulk = False

    def __init__(self, url: str, variant: str) -> None:
        self.loop = asyncio.new_event_loop()

    def enqueuer(self, kind: str) -> Callable[[], Awaitable[object]]:
        """The zero-argument coroutine function that enqueues one task of ``kind``."""
        raise NotImplementedError

    def run(self, awaitable: Awaitable[T]) -> T:
        return self.loop.run_until_complete(awaitable)

    def each(self, kind: str, n: int) -> None:
        self.loop.run_until_complete(self._each(self.enqueuer(kind), n))

    @staticmethod
    async def _each(enqueue: Callable[[], Awaitable[object]], n: int) -> None:
        for _ in range(n):
            await enqueue()

    def many(self, kind: str, n: int) -> None:
        raise NotImplementedError

    def one(self, kind: str) -> None:
        self.loop.run_until_complete(self.enqueuer(kind)())

    async def aclose(self) -> None:
        pass

    def close(self) -> None:
        try:
            self.loop.run_until_complete(self.aclose())
        finally:
            self.loop.close()
