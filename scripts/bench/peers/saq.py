"""SAQ: ``saq peers.saq.settings`` (concurrency 10, its default); tuned concurrency 100. No bulk API."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from saq import Queue

from peers._common import record, redis_url

VARIANTS = {"default": "asyncio worker"}


async def noop(ctx: dict[str, Any]) -> None:
    record()


async def sleep(ctx: dict[str, Any]) -> None:
    await asyncio.sleep(0.01)
    record()


settings = {"queue": Queue.from_url(redis_url()), "functions": [noop, sleep]}
tuned = {**settings, "concurrency": 100}


class Producer:
    bulk = False

    def __init__(self, url: str, variant: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.queue = Queue.from_url(url)
        self.loop.run_until_complete(self.queue.connect())

    async def _each(self, kind: str, n: int) -> None:
        enqueue = self.queue.enqueue
        for _ in range(n):
            await enqueue(kind)

    def each(self, kind: str, n: int) -> None:
        self.loop.run_until_complete(self._each(kind, n))

    def many(self, kind: str, n: int) -> None:
        raise NotImplementedError

    def one(self, kind: str) -> None:
        self.loop.run_until_complete(self.queue.enqueue(kind))

    def close(self) -> None:
        self.loop.run_until_complete(self.queue.disconnect())
        self.loop.close()


def producer(url: str, variant: str) -> Producer:
    return Producer(url, variant)


def worker_argv(variant: str, mode: str) -> list[str] | str:
    return [str(Path(sys.executable).parent / "saq"), "peers.saq." + ("settings" if mode == "default" else "tuned")]
