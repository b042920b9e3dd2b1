"""Dramatiq with its Redis broker: ``dramatiq peers.dramatiq --processes 1`` (8 threads, its
default); tuned ``--threads 100``. No bulk API.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from peers._common import record, redis_url
from peers._producer import SyncProducer
from peers._roundtrip import incr_job

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


@dramatiq.actor
def incr() -> None:
    incr_job()


JOBS = {"noop": noop, "sleep": sleep, "incr": incr}


class Producer(SyncProducer):
    """The module's broker already points at BENCH_REDIS_URL."""

    def enqueuer(self, kind: str) -> Callable[[], object]:
        return JOBS[kind].send

    def close(self) -> None:
        broker.close()


producer = Producer


def worker_argv(variant: str, mode: str) -> list[str] | str:
    argv = [str(Path(sys.executable).parent / "dramatiq"), "peers.dramatiq", "--processes", "1"]
    return argv if mode == "default" else [*argv, "--threads", "100"]
