"""A worker in-process on the private redis-server, meeting failures mid-way: what it already
holds is not lost. Redis failing as a whole after one queue's claim (the leases in hand are
started), and an outcome refused by a script (retried until it lands or the lease ends).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from orchestrator import Orchestrator, TaskHandle, TaskState, WorkerSettings
from orchestrator.script_calls import Call
from orchestrator.worker.pipeline import Pipeliner
from orchestrator.worker.worker import Worker


def add(a: int, b: int) -> int:
    return a + b


def run_worker_until(app: Orchestrator, worker: Worker, done: Callable[[], bool], timeout: float = 10.0) -> None:
    """Run ``worker`` until ``done()`` holds (checked every few ms), or fail at the deadline."""

    async def main() -> None:
        running = asyncio.create_task(worker.run())
        deadline = time.monotonic() + timeout
        try:
            while not done():
                assert time.monotonic() < deadline, "the worker did not get there in time"
                assert not running.done(), "the worker stopped"
                await asyncio.sleep(0.005)
        finally:
            worker.stop()
            await running

    asyncio.run(main())


def spy_on_calls(monkeypatch: pytest.MonkeyPatch, fault: Callable[[Call[Any]], Exception | None]) -> list[str]:
    """Pipeliner.call raising ``fault(call)`` when it returns one; returns the scripts called."""
    real = Pipeliner.call
    called: list[str] = []

    async def call(self: Pipeliner, c: Call[Any], durable: bool = False) -> Any:
        called.append(c.script.name if c.script is not None else "")
        error = fault(c)
        if error is not None:
            raise error
        return await real(self, c, durable)

    monkeypatch.setattr(Pipeliner, "call", call)
    return called


def test_a_redis_wide_failure_after_one_queue_claimed_starts_the_leases_in_hand(
    app: Orchestrator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """They were dropped: RUNNING, unheartbeated, for the reaper (an attempt burned)."""
    high = app.enqueue("tests:add", [1, 2], queue="high")
    low = app.enqueue("tests:add", [3, 4], queue="low")
    failed: list[Call[Any]] = []

    def fault(c: Call[Any]) -> Exception | None:
        if c.script is not None and c.script.name == "claim" and "{low}" in c.keys[0] and not failed:
            failed.append(c)
            return redis.ConnectionError("connection lost (test)")
        return None

    spy_on_calls(monkeypatch, fault)
    settings = WorkerSettings(queues=(("high", 1), ("low", 1)), concurrency=2, name="w1", pool="asyncio")
    worker = Worker(app, settings, {"tests:add": add})
    handles: list[TaskHandle] = [high, low]
    run_worker_until(app, worker, lambda: all(h.status() is TaskState.SUCCESS for h in handles))
    assert failed, "the low queue's claim never failed"
    assert (high.info().attempts, high.result(), low.result()) == (1, 3, 7)


def test_an_outcome_refused_by_a_script_is_retried_until_it_lands(
    app: Orchestrator, r: redis.Redis, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """CorruptQueue escaped _execute: the result lost, only "Task exception was never retrieved"."""
    done_key = app.keys("default").done
    r.set(done_key, "spoiled")  # complete refuses: CORRUPT ... done is a string, not a zset
    handle = app.enqueue("tests:add", [1, 2])
    called = spy_on_calls(monkeypatch, lambda c: None)

    def repaired_after_three_refusals() -> bool:
        if called.count("complete") >= 3 and r.type(done_key) == b"string":
            r.delete(done_key)  # as orch doctor --repair would (moved aside)
        return handle.status() is TaskState.SUCCESS

    settings = WorkerSettings(queues=(("default", 1),), concurrency=1, name="w1", pool="asyncio")
    run_worker_until(app, Worker(app, settings, {"tests:add": add}), repaired_after_three_refusals)
    assert (handle.result(), handle.info().attempts) == (3, 1)
    reports = [rec.getMessage() for rec in caplog.records if "CorruptQueue" in rec.getMessage()]
    assert len(reports) == 1, reports  # reported once, not at every retry
