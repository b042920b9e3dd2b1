"""Task functions that report progress, run by tests/integration/test_progress.py in an
in-process worker of each pool (a process-pool child imports this module by name).

``ORCH_REDIS_URL`` names the test's private server (a child reads it to play a zombie).
"""

from __future__ import annotations

import os

import redis

from orchestrator import LeaseLost, Orchestrator, ValidationError
from orchestrator.context import current_task
from orchestrator.keys import QueueKeys

app = Orchestrator()


@app.task(name="progress:steps")
def steps(n: int) -> str:
    ctx = current_task()
    assert ctx is not None
    for i in range(1, n + 1):
        ctx.progress(i / n, {"step": i, "of": n})
    return "done"


@app.task(name="progress:asteps")
async def asteps(n: int) -> str:
    ctx = current_task()
    assert ctx is not None
    for i in range(1, n + 1):
        await ctx.aprogress(i / n, {"step": i, "of": n})
    ctx.progress(1.0, "sync call from a coroutine")  # blocks the loop for one round trip, and works
    return "done"


@app.task(name="progress:refusals")
def refusals() -> list[str]:
    """What the task sees when its report is refused: bad input (nothing sent), then a
    lost lease (its token is no longer the record's: a zombie)."""
    ctx = current_task()
    assert ctx is not None
    seen = []
    try:
        ctx.progress(1.5)
    except ValidationError as exc:
        seen.append(f"{type(exc).__name__} {exc.field}")
    r = redis.Redis.from_url(os.environ["ORCH_REDIS_URL"])
    try:
        r.hset(QueueKeys(ctx.queue).task(ctx.id), "token", "1")  # as if reaped and claimed again
        try:
            ctx.progress(0.5)
        except LeaseLost as exc:
            seen.append(f"{type(exc).__name__} {exc.code} {exc.task_id}")
        r.rpush("test:refusals", *seen)
    finally:
        r.close()
    return seen
