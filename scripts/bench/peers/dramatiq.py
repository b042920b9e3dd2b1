"""Dramatiq with its Redis broker: ``dramatiq peers.dramatiq --processes 1`` (8 threads, its
default); tuned ``--threads 100``. No bulk API.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from peers._common import record, redis_url

VARIANTS = {"default": "1 process, threads"}

broker = RedisBroker(url=redis_url())
dramatiq.set_broker(broker)


@dramatiq.actor
def noop() -> None:
    record()


@dramatiq.actor
def sleep() -> None:
    time.sleep(0.01)
    record()


JOBS = {"noop": noop, "sleep": sleep}


class Producer:
    bulk = False

    def __init__(self, url: str, variant: str) -> None:
        pass  # the module's broker already points at BENCH_REDIS_URL

    def each(self, kind: str, n: int) -> None:
        send = JOBS[kind].send
        for _ in range(n):
            send()

    def many(self, kind: str, n: int) -> None:
        raise NotImplementedError

    def one(self, kind: str) -> None:
        JOBS[kind].send()

    def close(self) -> None:
        broker.close()


def producer(url: str, variant: str) -> Producer:
    return Producer(url, variant)


def worker_argv(variant: str, mode: str) -> list[str] | str:
    argv = [str(Path(sys.executable).parent / "dramatiq"), "peers.dramatiq", "--processes", "1"]
    return argv if mode == "default" else [*argv, "--threads", "100"]
