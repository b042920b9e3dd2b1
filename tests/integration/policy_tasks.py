"""Task functions with retry policies, for tests/integration/test_retry_policy.py.

Imported by in-process workers and by their process-pool children (``--app`` style).
Nothing here touches Redis: what happened is read from each task's record.
"""

from __future__ import annotations

import asyncio
import datetime
import time

from orchestrator import FailNow, Orchestrator, RetryPolicy

app = Orchestrator("redis://127.0.0.1:1/0")  # only registers: a worker runs these
FAST = RetryPolicy(max_retries=3, backoff=60, jitter=False)  # a retry waits a minute: attempt 1 is what is seen


@app.task(name="policy:dont_retry", retry=FAST, dont_retry=(ValueError, LookupError))
def dont_retry(kind: str) -> None:
    raise {"value": ValueError, "key": KeyError, "runtime": RuntimeError}[kind](kind)


@app.task(name="policy:retry_on", retry=FAST, retry_on=ConnectionError)
def retry_on(kind: str) -> None:
    raise {"conn": ConnectionRefusedError, "value": ValueError}[kind](kind)


@app.task(name="policy:fail_now", retry=FAST)
def fail_now(text: str) -> int:
    try:
        return int(text)
    except ValueError as exc:
        raise FailNow(f"not a number: {text!r}") from exc


@app.task(name="policy:add", retry=FAST)
def add(a: int, b: int) -> int:
    return a + b  # add("x", 1): a TypeError inside the function, which is retried


@app.task(name="policy:when", retry=FAST)
def when() -> object:
    return {"at": datetime.datetime(2026, 1, 1)}


def _user_wait(seconds: float) -> None:
    time.sleep(seconds)


@app.task(name="policy:nap", max_retries=0, timeout=0.3)
def nap() -> None:
    _user_wait(2)


@app.task(name="policy:anap", max_retries=0, timeout=0.3)
async def anap() -> None:
    await asyncio.sleep(2)


@app.task(name="policy:thumb", queue="images", timeout=12, retry=RetryPolicy(max_retries=5, backoff=2), priority=2)
def thumb(path: str, width: int = 100) -> str:
    return f"{path}@{width}"


@app.task(name="policy:long", max_retries=0, timeout=60)
async def long() -> None:
    await asyncio.sleep(30)
