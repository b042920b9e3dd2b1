"""orchestrator itself, through its public API and ``orch worker``, default settings.

Two rows: plain ``def`` tasks (run in the worker's thread pool, the default) and
``async def`` tasks (run on the worker's event loop).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from orchestrator import Orchestrator
from peers._common import record, redis_url
from peers._producer import SyncProducer
from peers._roundtrip import aincr_job, incr_job

VARIANTS = {"thread": "def tasks, thread pool (default)", "async": "async def tasks"}

app = Orchestrator(redis_url())


@app.task
def noop() -> None:
    record()


@app.task
def sleep() -> None:
    time.sleep(0.01)
    record()


@app.task
def incr() -> None:
    incr_job()


@app.task
async def anoop() -> None:
    record()


@app.task
async def asleep() -> None:
    await asyncio.sleep(0.01)
    record()


@app.task
async def aincr() -> None:
    await aincr_job()


class Producer(SyncProducer):
    bulk = True

    def __init__(self, url: str, variant: str) -> None:
        self.app = Orchestrator(url)
        prefix = "a" if variant == "async" else ""
        self.names = {kind: globals()[f"{prefix}{kind}"].name for kind in ("noop", "sleep", "incr")}

    def enqueuer(self, kind: str) -> Callable[[], object]:
        return partial(self.app.enqueue, self.names[kind])

    def many(self, kind: str, n: int) -> None:
        name = self.names[kind]
        self.app.enqueue_many([self.app.request(name) for _ in range(n)])

    def close(self) -> None:
        self.app.close()


producer = Producer


def worker_argv(variant: str, mode: str) -> list[str] | str:
    argv = [str(Path(sys.executable).parent / "orch"), "worker", "--app", "peers.orchestrator"]
    if mode in ("tuned", "io"):
        argv += ["--concurrency", "100"]
    return argv
