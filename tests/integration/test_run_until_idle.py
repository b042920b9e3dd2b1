"""``app.run_until_idle()`` and the movable clock, through the pytest plugin's own fixtures.

Every task runs in this process through the production scripts (claim, complete, fail,
promote, reap, schedule_fire) and the worker's code: ``current_task()`` set, async tasks
on the loop, sync ones in a thread, the retry policy judged as a worker judges it. Time
moves only by ``orch_clock.advance``: nothing here sleeps.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from orchestrator import ConfigurationError, Orchestrator, TaskState, current_task
from orchestrator.script_calls import run
from orchestrator.testing import Clock, TaskRun

S = TaskState


def summary(runs: list[TaskRun]) -> list[tuple[str, int, TaskState | None, Any]]:
    return [(r.name, r.attempt, r.state, r.result if r.ok else (r.error or {}).get("type")) for r in runs]


def test_sync_and_async_tasks_run_in_priority_order_with_their_context(orch_app: Orchestrator) -> None:
    seen: list[tuple[str, int, str, bool]] = []

    @orch_app.task(name="t:sync")
    def sync_task(x: int) -> int:
        ctx = current_task()
        assert ctx is not None
        seen.append((ctx.name, ctx.attempt, ctx.worker, threading.current_thread() is threading.main_thread()))
        return x * 2

    @orch_app.task(name="t:async")
    async def async_task(x: int) -> str:
        ctx = current_task()
        assert ctx is not None
        seen.append((ctx.name, ctx.attempt, ctx.worker, threading.current_thread() is threading.main_thread()))
        await asyncio.sleep(0)
        return f"a{x}"

    first = sync_task.delay(1)
    async_task.enqueue([2], priority=1)  # lower runs first
    sync_task.enqueue([3], priority=9)
    runs = orch_app.run_until_idle()
    assert summary(runs) == [("t:async", 1, S.SUCCESS, "a2"), ("t:sync", 1, S.SUCCESS, 2), ("t:sync", 1, S.SUCCESS, 6)]
    assert runs[1].id == first.id and first.result(timeout=1) == 2
    assert seen == [  # async on the loop (main thread), sync in the worker's thread pool
        ("t:async", 1, "in-process", True), ("t:sync", 1, "in-process", False), ("t:sync", 1, "in-process", False),
    ]
    assert current_task() is None
    assert orch_app.run_until_idle() == []


def test_a_retry_waits_for_its_backoff_on_the_moved_clock(orch_app: Orchestrator, orch_clock: Clock) -> None:
    @orch_app.task(name="t:flaky", max_retries=2, backoff=60)
    def flaky() -> str:
        ctx = current_task()
        assert ctx is not None
        if ctx.attempt < 3:
            raise ConnectionError(f"down ({ctx.attempt})")
        return "up"

    flaky.delay()
    [first] = orch_app.run_until_idle()
    assert (first.state, first.attempt, first.error and first.error["message"]) == (S.RETRYING, 1, "down (1)")
    orch_clock.advance(20)  # the first retry waits 30-60 s (jitter): 10 s of real time to spare
    assert orch_app.run_until_idle() == []
    orch_clock.advance(40)
    assert summary(orch_app.run_until_idle()) == [("t:flaky", 2, S.RETRYING, "ConnectionError")]
    orch_clock.advance(120)  # the second waits 60-120 s
    assert summary(orch_app.run_until_idle()) == [("t:flaky", 3, S.SUCCESS, "up")]
    assert orch_clock.offset == 180


def test_failures_are_judged_as_a_worker_judges_them(orch_app: Orchestrator) -> None:
    @orch_app.task(name="t:strict", dont_retry=ValueError)
    def strict() -> None:
        raise ValueError("no")

    @orch_app.task(name="t:when")
    def when() -> object:
        return {1, 2}  # not JSON

    strict.delay()
    when.delay()
    orch_app.enqueue("t:nobody", [1])  # a name nothing here registered
    assert summary(orch_app.run_until_idle()) == [
        ("t:strict", 1, S.FAILED, "ValueError"), ("t:when", 1, S.FAILED, "NotSerializable"),
        ("t:nobody", 1, S.FAILED, "UnknownTask"),
    ]


def test_delayed_tasks_and_what_tasks_enqueue_run_once_due(orch_app: Orchestrator, orch_clock: Clock) -> None:
    @orch_app.task(name="t:parent")
    def parent(n: int) -> int:
        child.delay(n + 1)
        child.enqueue([n + 2], delay=600)
        return n

    @orch_app.task(name="t:child")
    async def child(n: int) -> int:
        return n

    parent.delay(1)
    assert summary(orch_app.run_until_idle()) == [("t:parent", 1, S.SUCCESS, 1), ("t:child", 1, S.SUCCESS, 2)]
    orch_clock.advance(590)  # 10 s of real time to spare
    assert orch_app.run_until_idle() == []
    orch_clock.advance(10)
    assert summary(orch_app.run_until_idle()) == [("t:child", 1, S.SUCCESS, 3)]


def test_periodic_schedules_fire_as_the_clock_moves(orch_app: Orchestrator, orch_clock: Clock) -> None:
    @orch_app.task(name="t:tick")
    def tick() -> str:
        return "tick"

    orch_app.schedule("minutely", tick.name, every=60)
    orch_app.run_until_idle()  # whether the first tick is due depends on the second it is now
    for _ in range(3):
        orch_clock.advance(60)
        assert summary(orch_app.run_until_idle()) == [("t:tick", 1, S.SUCCESS, "tick")]


def test_an_expired_lease_is_reaped_and_the_task_runs_again(orch_app: Orchestrator, orch_clock: Clock) -> None:
    @orch_app.task(name="t:job")
    def job() -> str:
        return "done"

    handle = job.delay()
    lease_ms = round(orch_app.settings.lease_timeout * 1000)
    [lease] = run(orch_app.redis, orch_app._scripts("default").claim("ghost", 1, lease_ms))  # a worker that died
    assert orch_app.run_until_idle() == []
    orch_clock.advance(orch_app.settings.lease_timeout + 0.1)
    assert orch_app.run_until_idle() == [] and handle.status() is S.RETRYING  # reaped: retried after its backoff
    orch_clock.advance(1)
    assert summary(orch_app.run_until_idle()) == [("t:job", 2, S.SUCCESS, "done")]
    assert handle.result(timeout=1) == "done" and lease.attempt == 1


def test_max_tasks_and_queues_bound_a_run(orch_app: Orchestrator) -> None:
    @orch_app.task(name="t:again")
    def again(n: int) -> int:
        again.delay(n + 1)  # forever
        return n

    @orch_app.task(name="t:mail", queue="mail")
    def mail() -> str:
        return "sent"

    again.delay(0)
    mail.delay()
    assert summary(orch_app.run_until_idle(queues=["mail"])) == [("t:mail", 1, S.SUCCESS, "sent")]
    assert [r.result for r in orch_app.run_until_idle(max_tasks=5)] == [0, 1, 2, 3, 4]
    with pytest.raises(ConfigurationError, match="max_tasks"):
        orch_app.run_until_idle(max_tasks=0)


def test_inside_an_event_loop_it_is_awaited(orch_app: Orchestrator) -> None:
    @orch_app.task(name="t:ping")
    async def ping() -> str:
        return "pong"

    async def body() -> list[TaskRun]:
        with pytest.raises(ConfigurationError, match="arun_until_idle"):
            orch_app.run_until_idle()
        await ping.adelay()
        try:
            return await orch_app.arun_until_idle()
        finally:
            await orch_app.aclose()

    assert summary(asyncio.run(body())) == [("t:ping", 1, S.SUCCESS, "pong")]


def test_the_clock_moves_calls_of_queues_already_in_use(orch_app: Orchestrator, orch_clock: Clock) -> None:
    queue = orch_app.queue("default")  # holds its script builder from now on
    orch_app.enqueue("t:later", delay=3600)
    assert queue.counts()["scheduled"] == 1
    before = orch_clock.now_ms()
    orch_clock.advance(3600)
    assert orch_clock.now_ms() - before >= 3_600_000
    orch_app.run_until_idle()  # promoted (then failed: no function), so the moved offset reached the script
    assert queue.counts()["failed"] == 1
    with pytest.raises(ValueError, match="seconds >= 0"):
        orch_clock.advance(-1)


def test_progress_reports_of_sync_and_async_tasks_reach_redis(orch_app: Orchestrator) -> None:
    @orch_app.task(name="t:steps")
    def steps() -> None:
        ctx = current_task()
        assert ctx is not None
        ctx.progress(0.5, data={"step": "half"})

    @orch_app.task(name="t:asteps")
    async def asteps() -> None:
        ctx = current_task()
        assert ctx is not None
        await ctx.aprogress(0.25)

    handles = [steps.delay(), asteps.delay()]
    assert [r.state for r in orch_app.run_until_idle()] == [S.SUCCESS, S.SUCCESS]
    shown = [h.progress() for h in handles]
    assert [(p.fraction, p.data) for p in shown if p is not None] == [(0.5, {"step": "half"}), (0.25, None)]
