"""Huey with Redis: ``huey_consumer peers.huey.huey`` (one worker thread, its default);
tuned ``-w 100 -k thread``. No bulk API.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from huey import RedisHuey

from peers._common import record, redis_url

VARIANTS = {"default": "consumer, threads"}

huey = RedisHuey("bench", url=redis_url())


@huey.task()
def noop() -> None:
    record()


@huey.task()
def sleep() -> None:
    time.sleep(0.01)
    record()


JOBS = {"noop": noop, "sleep": sleep}


class Producer:
    bulk = False

    def __init__(self, url: str, variant: str) -> None:
        pass  # the module's huey already points at BENCH_REDIS_URL

    def each(self, kind: str, n: int) -> None:
        task = JOBS[kind]
        for _ in range(n):
            task()

    def many(self, kind: str, n: int) -> None:
        raise NotImplementedError

    def one(self, kind: str) -> None:
        JOBS[kind]()

    def close(self) -> None:
        pass


def producer(url: str, variant: str) -> Producer:
    return Producer(url, variant)


def worker_argv(variant: str, mode: str) -> list[str] | str:
    argv = [str(Path(sys.executable).parent / "huey_consumer"), "peers.huey.huey"]
    return argv if mode == "default" else [*argv, "-w", "100", "-k", "thread"]
