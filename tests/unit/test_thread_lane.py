"""The worker's thread pool for ``def`` tasks (``orchestrator/worker/threads.py``): threads
started as needed up to the size, outcomes delivered in batches, abandoned calls."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from orchestrator.worker.threads import ThreadLane

WHO: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="nobody")


def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Block (the loop too, on purpose) until ``condition`` holds; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.001)


def test_a_call_runs_in_a_pool_thread_within_its_context_and_its_error_reaches_the_awaiter() -> None:
    async def main() -> None:
        lane = ThreadLane(2, "t")
        ctx = contextvars.copy_context()
        ctx.run(WHO.set, "task-1")
        call = lane.submit(ctx, lambda: (WHO.get(), threading.current_thread().name))
        assert await call.future == ("task-1", "t_0")
        assert WHO.get() == "nobody"  # the task's context never leaks into the loop's

        def boom() -> None:
            raise ValueError("no")

        with pytest.raises(ValueError, match="no"):
            await lane.submit(contextvars.copy_context(), boom).future

        def stop() -> None:
            raise StopIteration

        with pytest.raises(RuntimeError, match="StopIteration"):  # a future refuses StopIteration itself
            await lane.submit(contextvars.copy_context(), stop).future
        lane.close()

    asyncio.run(main())


def test_threads_start_as_needed_and_never_beyond_the_size() -> None:
    async def main() -> None:
        lane = ThreadLane(3, "t")
        release = threading.Event()
        started: list[str] = []

        def block() -> str:
            started.append(threading.current_thread().name)
            release.wait(5)
            return "ok"

        calls = [lane.submit(contextvars.copy_context(), block) for i in range(3)]
        until(lambda: len(started) == 3)  # all three at once: none waits while a thread could start
        assert sorted(started) == ["t_0", "t_1", "t_2"]
        fourth = lane.submit(contextvars.copy_context(), block)
        time.sleep(0.05)
        assert len(started) == 3 and len(lane._threads) == 3  # the size bounds the threads
        release.set()
        assert await asyncio.gather(*(c.future for c in [*calls, fourth])) == ["ok"] * 4
        assert len(lane._threads) == 3
        lane.close()

    asyncio.run(main())


def test_outcomes_that_end_together_reach_the_loop_in_one_wake_up() -> None:
    async def main() -> None:
        lane = ThreadLane(5, "t")
        deliveries = 0
        deliver = lane._deliver

        def counted() -> None:
            nonlocal deliveries
            deliveries += 1
            deliver()

        lane._deliver = counted  # type: ignore[method-assign]
        release = threading.Event()
        calls = [lane.submit(contextvars.copy_context(), lambda: release.wait(5)) for i in range(5)]
        release.set()
        until(lambda: len(lane._done) == 5)  # the loop is blocked here: all five end before it runs again
        assert await asyncio.gather(*(c.future for c in calls)) == [True] * 5
        assert deliveries == 1
        lane.close()

    asyncio.run(main())


def test_an_abandoned_call_never_runs_if_no_thread_took_it_and_reports_its_return_if_one_did() -> None:
    async def main() -> None:
        lane = ThreadLane(1, "t")
        release = threading.Event()
        ran: list[str] = []

        def block(name: str) -> Callable[[], Any]:
            def run() -> None:
                ran.append(name)
                release.wait(5)
            return run

        running = lane.submit(contextvars.copy_context(), block("a"))
        until(lambda: ran == ["a"])
        waiting = lane.submit(contextvars.copy_context(), block("b"))
        returned = asyncio.Event()
        assert lane.thread_of(running) is not None and lane.thread_of(waiting) is None
        assert lane.abandon(running, returned.set)  # it runs on: the caller counts its slot
        assert not lane.abandon(waiting, lambda: None)  # not started: it never will
        release.set()
        await asyncio.wait_for(returned.wait(), 5)
        done = lane.submit(contextvars.copy_context(), lambda: "c")
        assert await done.future == "c"
        assert ran == ["a"]
        assert not lane.abandon(done, lambda: None)  # returned already: nothing to wait for
        lane.close()

    asyncio.run(main())
