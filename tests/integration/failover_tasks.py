"""Task functions of the failover tests: they touch no Redis of their own, so a failover
changes only what the queue does with them (a task that reads Redis itself may fail
while the sentinels elect, and be retried for that: not what these tests look at)."""

from __future__ import annotations

import time

from orchestrator import Orchestrator
from orchestrator.context import current_task

app = Orchestrator()


@app.task(name="failover:add", max_retries=5)
def add(a: int, b: int) -> int:
    return a + b


@app.task(name="failover:nap", max_retries=5)
def nap(seconds: float) -> float:
    """Sleeps ``seconds`` on its first attempt (still running when the primary dies), a
    moment on the next ones (the attempt after its lease was reaped)."""
    ctx = current_task()
    time.sleep(seconds if ctx is None or ctx.attempt == 1 else 0.05)
    return seconds
