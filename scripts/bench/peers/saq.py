"""SAQ: ``saq peers.saq.settings`` (concurrency 10, its default); tuned concurrency 100. No bulk API."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

from saq import Queue

from peers._common import record, redis_url
from peers._producer import AsyncProducer
from peers._roundtrip import aincr_job

VARIANTS = {"default": "asyncio worker"}


async def noop(ctx: dict[str, Any]) -> None:
    record()


async def sleep(ctx: dict[str, Any]) -> None:
    await asyncio.sleep(0.01)
    record()


async def incr(ctx: dict[str, Any]) -> None:
    await aincr_job()


settings = {"queue": Queue.from_url(redis_url()), "functions": [noop, sleep, incr]}
tuned = {**settings, "concurrency": 100}


class Producer(AsyncProducer):
    def __init__(self, url: str, variant: str) -> None:
        super().__init__(url, variant)
        self.queue = Queue.from_url(url)
        self.run(self.queue.connect())

    def enqueuer(self, kind: str) -> Callable[[], Awaitable[object]]:
        return partial(self.queue.enqueue, kind)

    async def aclose(self) -> None:
        await self.queue.disconnect()


producer = Producer


def worker_argv(variant: str, mode: str) -> list[str] | str:
    return [str(Path(sys.executable).parent / "saq"), "peers.saq." + ("settings" if mode == "default" else "tuned")]
