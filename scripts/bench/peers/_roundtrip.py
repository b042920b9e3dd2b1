"""The one-round-trip job and its workload (``incr``): a task that makes one Redis request.

Owns the job every adapter registers as its "incr" kind: an INCR through a sync redis-py
client for a ``def`` task (one client per process, its connection pool shared by the
worker's threads), through ``redis.asyncio`` for an ``async def`` one (one client per event
loop), on the bench's own Redis, then the usual line in the sink (``_common.record``). The
most common real task is a call to a network service: this job makes the hand-off between
the library's loop and the task's own I/O visible, which a file append hides.

Owns the workload too: the Redis CPU of the job's own request (a baseline, so the engine's
per-task cost can be shown net of it), single enqueues with the Redis CPU per enqueue, a
default drain and a concurrency-100 drain each with the Redis CPU per task, and drains with
2 and 4 worker processes. Does not read the sink nor start workers (``_common.Bench``).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING, Any

import redis
import redis.asyncio

from peers._common import record, redis_url

if TYPE_CHECKING:
    from peers._common import Bench

COUNTER = "bench:incr"  # the job's own key, beside the library's keys; FLUSHALL clears it
JOB_SAMPLES = 5_000  # sequential INCRs timed for the job's own Redis CPU

_sync: tuple[int, redis.Redis] | None = None  # (pid, client): a forked child makes its own
_async: dict[tuple[int, int], tuple[asyncio.AbstractEventLoop, redis.asyncio.Redis]] = {}


def incr_job() -> None:
    """The ``def`` job: one INCR on a sync client, then the sink line."""
    global _sync
    if _sync is None or _sync[0] != os.getpid():
        _sync = (os.getpid(), redis.Redis.from_url(redis_url()))
    _sync[1].incr(COUNTER)
    record()


async def aincr_job() -> None:
    """The ``async def`` job: one INCR on an asyncio client of this loop, then the sink line."""
    loop = asyncio.get_running_loop()
    key = (os.getpid(), id(loop))
    got = _async.get(key)
    if got is None or got[0] is not loop:
        got = _async[key] = (loop, redis.asyncio.Redis.from_url(redis_url()))
    await got[1].incr(COUNTER)
    record()


# ------------------------------------------------------------------------------ workload


def job_cost(b: Bench, n: int = JOB_SAMPLES) -> float:
    """Redis CPU (us) of the job's own request: n sequential INCRs from one client, per INCR."""
    client = redis.Redis.from_url(b.url)
    try:
        client.ping()
        cpu0 = b.redis_cpu()
        for _ in range(n):
            client.incr(COUNTER)
        return (b.redis_cpu() - cpu0) / n * 1e6
    finally:
        client.delete(COUNTER)
        client.close()


def enqueue(b: Bench, n: int, cap: float) -> dict[str, Any]:
    """Up to n single enqueues in batches of 1,000 until ``cap`` s: rate and Redis CPU per enqueue."""
    done, spent = 0, 0.0
    cpu0 = b.redis_cpu()
    while done < n and spent < cap:
        step = min(1000, n - done)
        t0 = time.perf_counter()
        b.producer.each("incr", step)
        spent += time.perf_counter() - t0
        done += step
    cpu = b.redis_cpu() - cpu0
    return {"rate": done / spent, "done": done, "of": n, "partial": done < n, "cpu_us": cpu / done * 1e6}


def workload(b: Bench) -> dict[str, Any]:
    """The ``incr`` workload; see the module docstring."""
    n, cap, enqueue_cap = b.p["n"], b.p["cap"], b.p["enqueue_cap"]
    default, tuned = b.argv("default"), b.argv("tuned")
    if isinstance(default, str):
        raise RuntimeError(default)
    b.flush()
    out: dict[str, Any] = {"job_us": job_cost(b)}
    b.producer.each("incr", 1)  # scripts loaded and clients connected before the measured phase
    b.flush()
    out["enqueue"] = enqueue(b, n, enqueue_cap)
    out["drain"] = b.drain(default, out["enqueue"]["done"], cap, stats=True)
    b.flush()
    if isinstance(tuned, str):
        out["tuned"] = {"na": tuned}
    else:
        queued, _ = b.fill("incr", n, enqueue_cap)
        out["tuned"] = b.drain(tuned, queued, cap, stats=True)
        b.flush()
    scale_n = b.p["scale_n"]
    for k in b.p["procs"]:
        queued, _ = b.fill("incr", scale_n + 200 * k, enqueue_cap)  # killed workers take their claims along
        out[f"procs{k}"] = b.drain(default, min(queued, scale_n), b.p["scale_cap"], k=k)
        b.flush()
    return out
