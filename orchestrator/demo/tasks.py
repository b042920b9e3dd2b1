"""The task functions ``orch demo`` (and the docker-compose workers) run.

Owns three tasks with stable names: ``demo:work`` (simulated work, a sleep),
``demo:flaky`` (fails its first run, succeeds on retry) and ``demo:doomed`` (always
fails, so it ends in the dead-letter set). ``demo:flaky`` remembers its runs in Redis,
under the deployment's prefix, so the memory survives a killed worker. Reads
``ORCH_REDIS_URL`` and ``ORCH_PREFIX`` like the CLI does. Does not enqueue anything.

    orch worker --app orchestrator.demo.tasks

See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import os
import threading
import time

import redis

from ..client import Orchestrator
from ..config import DEFAULT_REDIS_URL, REDIS_URL_ENV
from ..connection import sync_client
from ..errors import TransientError
from ..keys import DEFAULT_PREFIX

PREFIX_ENV = "ORCH_PREFIX"
STATE_TTL = 86400  # seconds a flaky task's run counter is kept

app = Orchestrator()
# (The ignores below: ``Orchestrator.task`` is typed ``-> Any``, which strict mypy calls untyped.)

_client: redis.Redis | None = None
_client_lock = threading.Lock()


def _redis() -> redis.Redis:
    global _client
    with _client_lock:
        if _client is None:
            _client = sync_client(os.environ.get(REDIS_URL_ENV) or DEFAULT_REDIS_URL)
        return _client


def state_key(prefix: str, task: str, key: str) -> str:
    """Where a demo task keeps its own state: under the deployment's prefix, so it is cleaned up with it."""
    return f"{prefix}:demo:{task}:{key}"


def _sleep_ms(ms: int) -> None:
    time.sleep(max(0, ms) / 1000)


@app.task(name="demo:work", max_retries=3, backoff=0.2, timeout=10)
def work(ms: int) -> int:
    """Simulated work: sleep ``ms`` milliseconds."""
    _sleep_ms(ms)
    return ms


@app.task(name="demo:flaky", max_retries=3, backoff=0.3, timeout=10)
def flaky(key: str, ms: int) -> int:
    """Fails the first time it runs (a simulated transient error), succeeds on retry."""
    _sleep_ms(ms)
    counter = state_key(os.environ.get(PREFIX_ENV) or DEFAULT_PREFIX, "flaky", key)
    pipe = _redis().pipeline()
    pipe.incr(counter)
    pipe.expire(counter, STATE_TTL)
    runs, _ = pipe.execute()
    if runs == 1:
        raise TransientError("simulated transient error (first run)")
    return ms


@app.task(name="demo:doomed", max_retries=2, backoff=0.2, timeout=10)
def doomed(ms: int) -> None:
    """Always fails: shows retries with backoff, then the dead-letter set."""
    _sleep_ms(ms)
    raise ValueError("simulated permanent error")
