"""BullMQ's Python port: no worker command line, so ``python -m peers bullmq worker`` runs a
``Worker`` until SIGTERM (concurrency 1, its default; tuned 100).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

from bullmq import Queue, Worker

from peers._common import record, redis_url

VARIANTS = {"default": "asyncio Worker"}
QUEUE = "bench"


async def process(job: Any, token: str) -> None:
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


class Producer:
    bulk = True

    def __init__(self, url: str, variant: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.queue = Queue(QUEUE, {"connection": url})

    async def _each(self, kind: str, n: int) -> None:
        add = self.queue.add
        for _ in range(n):
            await add(kind, {})

    def each(self, kind: str, n: int) -> None:
        self.loop.run_until_complete(self._each(kind, n))

    def many(self, kind: str, n: int) -> None:
        self.loop.run_until_complete(self.queue.addBulk([{"name": kind, "data": {}} for _ in range(n)]))

    def one(self, kind: str) -> None:
        self.loop.run_until_complete(self.queue.add(kind, {}))

    def close(self) -> None:
        self.loop.run_until_complete(self.queue.close())
        self.loop.close()


def producer(url: str, variant: str) -> Producer:
    return Producer(url, variant)


def worker_argv(variant: str, mode: str) -> list[str] | str:
    argv = [sys.executable, "-m", "peers", "bullmq", "worker"]
    return argv if mode == "default" else [*argv, "--concurrency", "100"]
