"""BullMQ's Python port: no worker command line, so ``python -m peers bullmq worker`` runs a
``Worker`` until SIGTERM (concurrency 1, its default; tuned 100).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from bullmq import Queue, Worker

from peers._common import record, redis_url
from peers._producer import AsyncProducer
from peers._roundtrip import aincr_job

VARIANTS = {"default": "asyncio Worker"}
QUEUE = "bench"


async def process(job: Any, token: str) -> None:
    if job.name == "incr":
        await aincr_job()
        return
    if job.name == "sleep":
        await asyncio.sleep(0.01)
    record()


def worker(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m peers bullmq worker")
    parser.add_argument("--concurrency", type=int, default=None)
    args = parser.parse_args(argv)

    async def main() -> None:
        opts: dict[str, Any] = {"connection": redis_url()}
        if args.concurrency:
            opts["concurrency"] = args.concurrency
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        w = Worker(QUEUE, process, opts)
        await stop.wait()
        await w.close()

    asyncio.run(main())


class Producer(AsyncProducer):
    bulk = True

    def __init__(self, url: str, variant: str) -> None:
        super().__init__(url, variant)
        self.queue = Queue(QUEUE, {"connection": url})

    def enqueuer(self, kind: str) -> Callable[[], Awaitable[object]]:
        return partial(self.queue.add, kind, {})

    def many(self, kind: str, n: int) -> None:
        self.run(self.queue.addBulk([{"name": kind, "data": {}} for _ in range(n)]))

    async def aclose(self) -> None:
        await self.queue.close()


producer = Producer


def worker_argv(variant: str, mode: str) -> list[str] | str:
    argv = [sys.executable, "-m", "peers", "bullmq", "worker"]
    return argv if mode == "default" else [*argv, "--concurrency", "100"]
