"""One producer process of the chaos soak: ``python -m tests.chaos.soak_producer``.

Owns enqueueing a random mix of soak tasks (priorities, delays, retry budgets, planned
failures, timeouts, idempotency keys, some repeated on purpose) until a wall-clock time or
SIGTERM, and writing every request with its outcome to a JSON-lines file: the id and
``created`` flag Redis acknowledged, or ``"ack": false`` when the call raised (Redis was
being killed: such a task may or may not exist, and the checker counts it apart). An
enqueue is never retried with new ids, which could create a task twice. Each request
carries a tag unique to the run (``p<producer>-<n>``) as its first argument, so the
checker can tie every task record back to the request that created it. It enqueues by
name through ``soak_tasks.app``, where the tasks are registered, so their options (retry
backoff) apply. Does not check anything.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, TextIO

import orjson
import redis

from orchestrator import NotReplicated, Orchestrator, Settings

from . import soak_tasks
from .soak_tasks import ASYNC_QUEUE, ASYNC_TASK, SYNC_QUEUE, SYNC_TASK

KEY_POOL = 25  # idempotency keys shared by both producers: repeats are frequent
KINDS = {  # kind: weight
    "ok": 45,
    "flaky": 25,
    "slow": 12,
    "doomed": 10,
    "timeout": 8,
}


@dataclass
class Planned:
    """One request, as written to the producer's file (its outcome is added when known)."""

    producer: int
    tag: str
    kind: str
    name: str
    queue: str
    priority: int
    delay: float | None
    key: str | None
    max_retries: int
    timeout: float
    seconds: float
    fail_rate: float
    unique_key: str | None = None


def plan_batch(rng: random.Random, producer: int, first: int) -> list[Planned]:
    """One enqueue call's worth of requests, all of one queue (one script call)."""
    is_async = rng.random() < 0.4
    queue, name = (ASYNC_QUEUE, ASYNC_TASK) if is_async else (SYNC_QUEUE, SYNC_TASK)
    out: list[Planned] = []
    for _ in range(rng.randint(1, 4)):
        kind = rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
        seconds, fail_rate, timeout, retries = rng.uniform(0.02, 0.3), 0.0, 60.0, rng.choice([0, 1, 2, 3, 3, 4])
        if kind == "flaky":
            seconds, fail_rate = rng.uniform(0.05, 0.4), 0.5
        elif kind == "slow":
            seconds = rng.uniform(0.8, 2.5)  # spans heartbeats, often caught by a fault
        elif kind == "doomed":
            fail_rate, retries = 1.0, rng.choice([0, 1, 2])
        elif kind == "timeout":
            seconds, timeout, retries = 1.0, 0.4, rng.choice([0, 1])
        delay = round(rng.uniform(0.1, 3.0), 3) if rng.random() < 0.25 else None
        key = unique_key = None
        if rng.random() < 0.2:  # key= half the time, unique_key= the other half
            if rng.random() < 0.5:
                key = f"key-{rng.randrange(KEY_POOL)}"
            else:
                unique_key = f"key-{rng.randrange(KEY_POOL)}"
        tag = f"p{producer}-{first + len(out)}"
        request = Planned(
            producer, tag, kind, name, queue, rng.randint(0, 9), delay, key, retries, timeout,
            round(seconds, 3), fail_rate, unique_key,
        )
        out.append(request)
        if (key or unique_key) and rng.random() < 0.4:  # the same key again at once, on purpose
            again = Planned(**{**asdict(request), "tag": f"p{producer}-{first + len(out)}"})
            out.append(again)
    return out


def _write(out: TextIO, request: Planned, **outcome: Any) -> None:
    out.write(orjson.dumps({**asdict(request), **outcome}).decode() + "\n")


def enqueue(app: Orchestrator, batch: Sequence[Planned], out: TextIO) -> bool:
    """Enqueue ``batch`` in one call and record the outcome of each request; False when it raised."""
    requests = [
        app.request(
            r.name, [r.tag, r.seconds, r.fail_rate], queue=r.queue, priority=r.priority, delay=r.delay,
            key=r.key, max_retries=r.max_retries, timeout=r.timeout, unique_key=r.unique_key,
        )
        for r in batch
    ]
    try:
        handles = app.enqueue_many(requests)
    except (redis.RedisError, OSError, NotReplicated) as exc:  # NotReplicated: written, not acknowledged
        for r in batch:
            _write(out, r, ack=False, error=f"{type(exc).__name__}: {exc}")
        return False
    finally:
        out.flush()
    for r, handle in zip(batch, handles, strict=True):
        _write(out, r, ack=True, id=handle.id, created=handle.created)
    out.flush()
    return True


def run(producer: int, seed: int, until: float, rate: float, path: str) -> int:
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    rng = random.Random(seed)
    app = soak_tasks.app  # the registered tasks' own app (ORCH_REDIS_URL): their retry backoff applies
    durability = os.environ.get("ORCH_DURABILITY", "fast")  # read at the edge, as the CLI does
    if durability != app.settings.durability:
        app.settings = Settings(**{**app.settings.model_dump(), "durability": durability})
    sent = failures = 0
    try:
        with open(path, "a") as out:
            while not stopping and time.time() < until:
                batch = plan_batch(rng, producer, sent)
                sent += len(batch)
                if enqueue(app, batch, out):
                    failures = 0
                    time.sleep(rng.expovariate(rate / 2.5))  # about `rate` tasks a second
                else:
                    failures += 1
                    time.sleep(min(2.0, 0.1 * 2**failures))
    finally:
        with contextlib.suppress(Exception):
            app.close()
    print(f"producer {producer}: {sent} requests until {time.strftime('%H:%M:%S')}", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=int, required=True, help="Producer number (tags p<index>-<n>).")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--until", type=float, required=True, help="Stop enqueueing at this Unix time.")
    parser.add_argument("--rate", type=float, default=4.0, help="Tasks per second, on average.")
    parser.add_argument("--out", required=True, help="JSON-lines file of requests and outcomes.")
    args = parser.parse_args(argv)
    if "ORCH_REDIS_URL" not in os.environ:
        parser.error("ORCH_REDIS_URL must name the soak's Redis")
    return run(args.index, args.seed, args.until, args.rate, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
