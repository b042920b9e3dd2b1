"""RQ: ``rq worker`` with its default forking Worker (one child per job) and with SimpleWorker.

An RQ worker runs one job at a time, so the tuned and I/O workloads (concurrency 100 in
one process) do not apply.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from redis import Redis
from rq import Queue

from peers._common import record, redis_url
from peers._producer import SyncProducer
from peers._roundtrip import incr_job

VARIANTS = {"fork": "Worker (forks per job, default)", "simple": "SimpleWorker (no fork)"}
WORKER_CLASS = {"fork": "rq.worker.Worker", "simple": "rq.worker.SimpleWorker"}


def noop() -> None:
    record()


def sleep() -> None:
    time.sleep(0.01)
    record()


def incr() -> None:
    incr_job()


JOBS = {"noop": noop, "sleep": sleep, "incr": incr}


class Producer(SyncProducer):
    bulk = True

    def __init__(self, url: str, variant: str) -> None:
        self.redis = Redis.from_url(url)
        self.queue = Queue(connection=self.redis)

    def enqueuer(self, kind: str) -> Callable[[], object]:
        return partial(self.queue.enqueue, JOBS[kind])

    def many(self, kind: str, n: int) -> None:
        job = JOBS[kind]
        self.queue.enqueue_many([Queue.prepare_data(job) for _ in range(n)])

    def close(self) -> None:
        self.redis.close()


producer = Producer


def worker_argv(variant: str, mode: str) -> list[str] | str:
    if mode != "default":
        return "one job at a time per worker process"
    rq = str(Path(sys.executable).parent / "rq")
    return [rq, "worker", "-u", redis_url(), "-w", WORKER_CLASS[variant]]
