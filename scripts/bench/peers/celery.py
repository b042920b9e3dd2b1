"""Celery with its Redis broker (no result backend: its default). Two rows: the prefork pool
with one child (``-c 1``; tuned ``-c 2``, so no concurrency-100 I/O run), and the threads
pool (default concurrency, the CPU count; tuned ``-c 100``). No bulk API.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from celery import Celery

from peers._common import record, redis_url
from peers._producer import SyncProducer
from peers._roundtrip import incr_job

VARIANTS = {"prefork": "prefork pool, -c 1 (tuned -c 2)", "threads": "threads pool (tuned -c 100)"}

app = Celery("bench", broker=redis_url())


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


JOBS = {"noop": noop, "sleep": sleep, "incr": incr}


class Producer(SyncProducer):
    def __init__(self, url: str, variant: str) -> None:
        app.conf.broker_url = url

    def enqueuer(self, kind: str) -> Callable[[], object]:
        return JOBS[kind].delay

    def close(self) -> None:
        app.close()


producer = Producer


def worker_argv(variant: str, mode: str) -> list[str] | str:
    argv = [str(Path(sys.executable).parent / "celery"), "-A", "peers.celery", "worker", "-P", variant]
    if variant == "prefork":
        if mode == "io":
            return "prefork: one process per concurrent task"
        return [*argv, "-c", "1" if mode == "default" else "2"]
    return argv if mode == "default" else [*argv, "-c", "100"]
