"""Coalescing concurrent script calls into pipelines: the worker's commit path.

Owns one queue of pending calls per client. Calls made while a round trip is in flight
wait for it and then go together in the next pipeline, so a busy worker pays one round
trip for many completions and claims, and an idle one pays exactly one per call (no
timer, no added latency). With durability "replicated" a round trip holding an outcome
(``durable``) ends with WAIT on its connection, one for the whole batch; a call not durable
(a claim) gets its reply even when WAIT fell short. Does not build calls (``transitions``)
nor retry them.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

from redis.asyncio import Redis as AsyncRedis

from ..errors import NotReplicated
from ..script_calls import Call, Wait, arun_many

T = TypeVar("T")


class Pipeliner:
    def __init__(self, client: AsyncRedis, wait: Wait | None = None) -> None:
        self._client = client
        self._wait = wait
        self._waiting: list[tuple[Call[Any], asyncio.Future[Any], bool]] = []
        self._sender: asyncio.Task[Any] | None = None  # the round trip in flight or about to go
        self.round_trips = 0
        self.calls = 0

    async def call(self, call: Call[T], durable: bool = False) -> T:
        """Send ``call`` with whatever else is waiting; return its reply or raise its error
        (``durable``: NotReplicated when the replicas did not confirm it in time)."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiting.append((call, future, durable))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send())
        return await future

    async def call_now(self, call: Call[T]) -> T:
        """``call`` (not durable) sent at once from the caller's own task when no round trip
        is in flight or about to go, else as ``call``: an idle worker's claim after a wake-up
        saves a hop of the event loop each way (a sender task to start, a future to resolve).
        Calls made meanwhile wait for it, as for any round trip, then go together."""
        task = asyncio.current_task()
        if task is None or (self._sender is not None and not self._sender.done()):
            return await self.call(call)
        self._sender = task
        self.round_trips += 1
        self.calls += 1
        try:
            result = (await arun_many(self._client, [call]))[0]
        finally:
            self._sender = None
            if self._waiting:
                self._sender = asyncio.create_task(self._send())
        if isinstance(result, BaseException):
            raise result
        return result  # type: ignore[no-any-return]

    async def _send(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            self.round_trips += 1
            self.calls += len(batch)
            wait = self._wait if any(durable for _, _, durable in batch) else None
            try:
                results = await arun_many(self._client, [call for call, _, _ in batch], wait)
            except Exception as exc:  # the round trip itself failed: every call in it did
                results = [exc] * len(batch)
            for (_, future, durable), result in zip(batch, results, strict=True):
                if future.done():  # its caller was cancelled meanwhile
                    continue
                if isinstance(result, NotReplicated) and not durable:
                    result = result.reply
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

