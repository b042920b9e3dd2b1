"""Task functions of the chaos soak (``tests/chaos/soak.py``), run by real ``orch worker``s.

Owns what a run of a task records about itself: one JSON entry in the Redis list
``soak:attempts`` when it starts and one when it ends (``end``), raises (``raise``) or is
cancelled (``cancel``), each stamped with Redis TIME inside the same script call that
appends it, and carrying the task id, attempt, lease token and worker it ran under.
Thread and asyncio pools give those through ``current_task()``. A process-pool child has
no task context, so it finds its own lease in the queue's running set: the RUNNING task
whose worker is its parent (``SOAK_WORKER``) and whose first argument is its tag.
Does not decide anything about the queue: the soak's checker reads these entries.

A task sleeps ``seconds`` and then fails on purpose with probability ``fail_rate``
(decided per attempt, so retries can succeed), else returns its tag and lease token, so
the checker can tell which run a SUCCESS result came from.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
import redis
import redis.asyncio as aredis

from orchestrator import Orchestrator
from orchestrator.connection import async_client, sync_client
from orchestrator.context import current_task
from orchestrator.keys import QueueKeys

ATTEMPTS_KEY = "soak:attempts"
SYNC_QUEUE = "soak-sync"
ASYNC_QUEUE = "soak-async"
SYNC_TASK = "soak:work"
ASYNC_TASK = "soak:awork"
WORKER_ENV = "SOAK_WORKER"  # the worker's name, inherited by its process-pool children
LOG_PATIENCE = 30.0  # seconds a run keeps trying to record itself while Redis is away
CANCEL_LOG_PATIENCE = 2.0

# Appends one entry with the server's time in microseconds, in one atomic call.
_LOG_SCRIPT = """
local t = redis.call('TIME')
local us = string.format('%.0f', tonumber(t[1]) * 1000000 + tonumber(t[2]))
redis.call('RPUSH', KEYS[1], ARGV[1] .. ',"t":' .. us .. '}')
return us
"""

app = Orchestrator()


class PlannedFailure(Exception):
    """A failure the soak asked for, to exercise retries."""


class LogUnavailable(Exception):
    """Redis stayed unreachable longer than LOG_PATIENCE: the run cannot record itself."""


@dataclass(frozen=True)
class RunId:
    """Which lease a run holds, as far as the run itself can tell."""

    task: str | None
    queue: str
    token: str | None
    attempt: int | None
    worker: str
    tag: str
    via: str  # "context" (current_task), "lookup" (process pool) or "unknown" (lease not found)

    def entry(self, event: str) -> bytes:
        """The JSON object of one log entry, without its closing brace (the script adds the time)."""
        data = {
            "task": self.task, "queue": self.queue, "token": self.token, "attempt": self.attempt,
            "worker": self.worker, "tag": self.tag, "via": self.via, "event": event,
            "pid": os.getpid(), "nonce": uuid.uuid4().hex,
        }
        return orjson.dumps(data)[:-1]

    def fails(self, fail_rate: float) -> bool:
        """Whether this attempt fails on purpose: fixed per (tag, attempt), so runs are repeatable."""
        if fail_rate <= 0:
            return False
        seed = f"{self.tag}/{self.attempt}" if self.attempt is not None else None
        return random.Random(seed).random() < fail_rate

    def result(self) -> dict[str, Any]:
        return {"tag": self.tag, "token": self.token, "attempt": self.attempt, "worker": self.worker}


# ------------------------------------------------------------------------ sync side

_local = threading.local()


def _redis() -> redis.Redis:
    client: redis.Redis | None = getattr(_local, "client", None)
    if client is None:
        client = sync_client(os.environ["ORCH_REDIS_URL"])
        _local.client = client
    return client


def _patiently(what: str, call: Any, patience: float = LOG_PATIENCE) -> Any:
    deadline = time.monotonic() + patience
    pause = 0.05
    while True:
        try:
            return call()
        except redis.RedisError as exc:
            if time.monotonic() > deadline:
                raise LogUnavailable(f"cannot {what}: {exc}") from exc
            time.sleep(pause)
            pause = min(1.0, pause * 2)


def _log(run: RunId, event: str) -> None:
    script = _redis().register_script(_LOG_SCRIPT)
    entry = run.entry(event)  # one nonce for every try: an entry sent twice is recognised as one
    _patiently(f"log {event}", lambda: script(keys=[ATTEMPTS_KEY], args=[entry]))


def _lookup(tag: str, queue: str) -> RunId:
    """A process-pool child's own lease: the RUNNING task of its worker whose first argument is ``tag``."""
    worker = os.environ.get(WORKER_ENV, "?")
    keys = QueueKeys(queue)

    def find() -> RunId | None:
        client = _redis()
        ids = [i.decode() for i in client.zrange(keys.running, 0, -1)]
        pipe = client.pipeline(transaction=False)
        for task_id in ids:
            pipe.hmget(keys.task(task_id), ["state", "token", "worker", "attempts", "args"])
        for task_id, (state, token, holder, attempts, args) in zip(ids, pipe.execute(), strict=True):
            if state == b"RUNNING" and holder == worker.encode() and args and orjson.loads(args)[:1] == [tag]:
                return RunId(task_id, queue, token.decode(), int(attempts), worker, tag, "lookup")
        return None

    found = _patiently("look up the lease", find)
    return found or RunId(None, queue, None, None, worker, tag, "unknown")


def _begin(tag: str, queue: str) -> RunId:
    ctx = current_task()
    if ctx is None:
        run = _lookup(tag, queue)
    else:
        run = RunId(ctx.id, ctx.queue, ctx.token, ctx.attempt, ctx.worker, tag, "context")
    _log(run, "start")
    return run


@app.task(name=SYNC_TASK, queue=SYNC_QUEUE, max_retries=3, backoff=0.2, timeout=60)
def work(tag: str, seconds: float, fail_rate: float) -> dict[str, Any]:
    run = _begin(tag, SYNC_QUEUE)
    time.sleep(seconds)
    if run.fails(fail_rate):
        _log(run, "raise")
        raise PlannedFailure(f"planned failure of {tag}, attempt {run.attempt}")
    _log(run, "end")
    return run.result()


# ----------------------------------------------------------------------- async side

_aclients: dict[int, aredis.Redis] = {}  # one per event loop


def _aredis() -> aredis.Redis:
    loop = id(asyncio.get_running_loop())
    client = _aclients.get(loop)
    if client is None:
        client = async_client(os.environ["ORCH_REDIS_URL"])
        _aclients[loop] = client
    return client


async def _alog(run: RunId, event: str, patience: float = LOG_PATIENCE) -> None:
    script = _aredis().register_script(_LOG_SCRIPT)
    entry = run.entry(event)  # one nonce for every try: an entry sent twice is recognised as one
    deadline = time.monotonic() + patience
    pause = 0.05
    while True:
        try:
            await script(keys=[ATTEMPTS_KEY], args=[entry])
            return
        except redis.RedisError as exc:
            if time.monotonic() > deadline:
                raise LogUnavailable(f"cannot log {event}: {exc}") from exc
            await asyncio.sleep(pause)
            pause = min(1.0, pause * 2)


@app.task(name=ASYNC_TASK, queue=ASYNC_QUEUE, max_retries=3, backoff=0.2, timeout=60)
async def awork(tag: str, seconds: float, fail_rate: float) -> dict[str, Any]:
    ctx = current_task()
    if ctx is None:  # never on the worker's loop; kept so a misuse shows in the log, not as a crash
        run = RunId(None, ASYNC_QUEUE, None, None, os.environ.get(WORKER_ENV, "?"), tag, "unknown")
    else:
        run = RunId(ctx.id, ctx.queue, ctx.token, ctx.attempt, ctx.worker, tag, "context")
    await _alog(run, "start")
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:  # timeout, lost lease or shutdown: record it, then let it go
        with contextlib.suppress(Exception):
            await _alog(run, "cancel", CANCEL_LOG_PATIENCE)
        raise
    if run.fails(fail_rate):
        await _alog(run, "raise")
        raise PlannedFailure(f"planned failure of {tag}, attempt {run.attempt}")
    await _alog(run, "end")
    return run.result()
