"""arq: ``arq peers.arq.settings`` (max_jobs 10, polls every 0.5 s: its defaults); tuned max_jobs 100."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

from arq import create_pool
from arq.connections import RedisSettings

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


settings = {"functions": [noop, sleep, incr], "redis_settings": RedisSettings.from_dsn(redis_url())}
tuned = {**settings, "max_jobs": 100}


class Producer(AsyncProducer):
    def __init__(self, url: str, variant: str) -> None:
        super().__init__(url, variant)
        self.pool = self.run(create_pool(RedisSettings.from_dsn(url)))

    def enqueuer(self, kind: str) -> Callable[[], Awaitable[object]]:
        return partial(self.pool.enqueue_job, kind)

    async def aclose(self) -> None:
        await self.pool.aclose()


producer = Producer


def worker_argv(variant: str, mode: str) -> list[str] | str:
    return [str(Path(sys.executable).parent / "arq"), "peers.arq." + ("settings" if mode == "default" else "tuned")]
