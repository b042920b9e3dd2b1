"""Hearing cancel requests as they are made, rather than at the next heartbeat.

Owns one pub/sub subscription per worker to its queues' cancel channels (cancel.lua
publishes the id of a RUNNING task asked to stop). A message is a hint, never trusted:
the task's record must say ``cancel_requested`` under the lease the worker holds before
the task is stopped. Messages missed while disconnected cost nothing but time: the
heartbeat reports every cancel request too. Does not stop tasks itself (the worker's
``interrupt``) nor write anything.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import Any

from redis.asyncio import Redis as AsyncRedis

from ..connection import aready
from ..sanitize import get_logger

log = get_logger(__name__)
RETRY_S = (1.0, 30.0)  # after a lost or refused subscription, doubling: the heartbeat covers the gap


class CancelListener:
    """``await run()`` until cancelled; calls ``on_cancel(queue, task_id)`` for confirmed requests.

    ``channels`` maps each channel to its queue; ``lease_of(queue, task_id)`` gives the task
    key and token of a task this worker runs, or None.
    """

    def __init__(
        self,
        redis: AsyncRedis,
        channels: Mapping[str, str],
        lease_of: Callable[[str, str], tuple[str, str] | None],
        on_cancel: Callable[[str, str], None],
        tag: str,
    ) -> None:
        self._redis = redis
        self._channels = dict(channels)
        self._lease_of = lease_of
        self._on_cancel = on_cancel
        self._tag = tag
        self._pause = RETRY_S[0]

    async def run(self) -> None:
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never ends on an error: the heartbeat still reports cancels
                log.debug("%s Cancel subscription lost (%s); again in %g s", self._tag, exc, self._pause)
                await asyncio.sleep(self._pause)
                self._pause = min(self._pause * 2, RETRY_S[1])

    async def _listen(self) -> None:
        await aready(self._redis)  # a cluster's pub/sub needs the slot map first
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(*self._channels)
            self._pause = RETRY_S[0]
            async for message in pubsub.listen():
                await self._heard(message)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]

    async def _heard(self, message: dict[str, Any]) -> None:
        channel, data = message.get("channel"), message.get("data")
        queue = self._channels.get(channel.decode() if isinstance(channel, bytes) else str(channel))
        if queue is None or not isinstance(data, bytes):
            return
        task_id = data.decode(errors="replace")
        lease = self._lease_of(queue, task_id)
        if lease is None:
            return  # not ours (another worker's task), or already over
        key, token = lease
        requested, current = await self._redis.hmget(key, ["cancel_requested", "token"])
        if requested == b"1" and current == token.encode():
            self._on_cancel(queue, task_id)
