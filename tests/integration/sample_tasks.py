"""Task functions the integration and chaos tests run in real worker processes.

Each records its attempts in Redis (list ``test:attempts``) so a test can tell how often
and by which lease it ran. ``ORCH_REDIS_URL`` names the test's private server.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import redis

from orchestrator import Orchestrator
from orchestrator.connection import sync_client
from orchestrator.context import current_task

app = Orchestrator()
_r: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _r
    if _r is None:
        _r = sync_client(os.environ["ORCH_REDIS_URL"])
    return _r


def _record(event: str) -> None:
    ctx = current_task()
    if ctx is not None:
        _redis().rpush("test:attempts", f"{ctx.id} {ctx.attempt} {ctx.token} {event} {os.getpid()}")


@app.task(name="tests:add")
def add(a: int, b: int) -> int:
    _record("run")
    return a + b


@app.task(name="tests:sleep", max_retries=3, backoff=0.05)
def sleep(seconds: float) -> float:
    _record("start")
    time.sleep(seconds)
    _record("end")
    return seconds


@app.task(name="tests:asleep", max_retries=3, backoff=0.05)
async def asleep(seconds: float) -> float:
    _record("start")
    await asyncio.sleep(seconds)
    _record("end")
    return seconds


@app.task(name="tests:fail_once", max_retries=2, backoff=0.05)
def fail_once(key: str) -> str:
    _record("run")
    if _redis().incr(f"test:fail_once:{key}") == 1:
        raise RuntimeError("first attempt fails")
    return "ok"


@app.task(name="tests:always_fail", max_retries=1, backoff=0.05)
def always_fail() -> None:
    _record("run")
    raise ValueError("always fails")


@app.task(name="tests:crash")
def crash() -> None:
    os._exit(13)


@app.task(name="tests:not_json")
def not_json() -> Any:
    return object()
