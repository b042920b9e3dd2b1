"""arq: ``arq peers.arq.settings`` (max_jobs 10, polls every 0.5 s: its defaults); tuned max_jobs 100."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from arq import create_pool
from arq.connections import RedisSettings

from peers._common import record, redis_url

VARIANTS = {"default": "asyncio worker"}


async def noop(ctx: dict[str, Any]) -> None:
    record()


async def sleep(ctx: dict[str, Any]) -> None:
    await asyncio.sleep(0.01)
    record()


settings = {"functions": [noop, sleep], "redis_settings": RedisSettings.from_dsn(redis_url())}
tuned = {**settings, "max_jobs": 100}


class Producer:
    bulk = False

    def __init__(self, url: str, variant: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.pool = self.loop.run_until_complete(create_pool(RedisSettings.from_dsn(url)))

    async def _each(self, kind: str, n: int) -> None:
        enqueue = self.pool.enqueue_job
        for _ in range(n):
            await enqueue(kind)

    def each(self, kind: str, n: int) -> None:
        self.loop.run_until_complete(self._each(kind, n))

    def many(self, kind: str, n: int) -> None:
        raise NotImplementedError

    def one(self, kind: str) -> None:
        self.loop.run_until_complete(self.pool.enqueue_job(kind))

    def close(self) -> None:
        self.loop.run_until_complete(self.pool.aclose())
        self.loop.close()


def producer(url: str, variant: str) -> Producer:
    return Producer(url, variant)


def worker_argv(variant: str, mode: str) -> list[str] | str:
    return [str(Path(sys.executable).parent / "arq"), "peers.arq." + ("settings" if mode == "default" else "tuned")]
