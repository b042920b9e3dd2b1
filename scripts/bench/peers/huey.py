"""Huey with Redis: ``huey_consumer peers.huey.huey`` (one worker thread, its default);
tuned ``-w 100 -k thread``. No bulk API.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from huey import RedisHuey

from peers._common import record, redis_url
from peers._producer import SyncProducer
from peers._roundtrip import incr_job

VARIANTS = {"default": "consumer, threads"}

huey = RedisHuey("bench", url=redis_url())


@huey.task()
def noop() -> None:
    record()


@huey.task()
def sleep() -> None:
    time.sleep(0.01)
    record()


@huey.task()
def incr() -> None:
    incr_job()


JOBS = {"noop": noop, "sleep": sleep, "incr": incr}


class Producer(SyncProducer):
    """The module's huey already points at BENCH_REDIS_URL."""

    def enqueuer(self, kind: str) -> Callable[[], object]:
        return JOBS[kind]


producer = Producer


def worker_argv(variant: str, mode: str) -> list[str] | str:
    argv = [str(Path(sys.executable).parent / "huey_consumer"), "peers.huey.huey"]
    return argv if mode == "default" else [*argv, "-w", "100", "-k", "thread"]
