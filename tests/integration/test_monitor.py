"""The scheduler's [Monitor] lines: one per dead worker, however many queues it served."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
import redis

from orchestrator import Orchestrator, SchedulerSettings
from orchestrator.scheduler import PassReport, Scheduler
from orchestrator.script_calls import run


def wait_past(r: redis.Redis, zsets: list[str], timeout: float = 5.0) -> None:
    """Until Redis's clock is past every score (deadline) in ``zsets``."""
    latest = max(score for key in zsets for _, score in r.zrange(key, 0, -1, withscores=True))
    give_up = time.monotonic() + timeout
    while True:
        seconds, micros = r.time()
        if seconds * 1000 + micros // 1000 > latest:
            return
        assert time.monotonic() < give_up, "Redis's clock did not pass the deadlines"
        time.sleep(0.005)


def test_a_dead_worker_of_three_queues_is_one_monitor_line(
    app: Orchestrator, r: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    queues = ("a", "b", "c")
    for queue in queues:
        app.enqueue("m:f", queue=queue)
        app.enqueue("m:f", queue=queue)
        run(r, app._scripts(queue).heartbeat("w1", 50, {"queues": "a,b,c"}, ()))
        assert len(run(r, app._scripts(queue).claim("w1", 2, 50))) == 2
    wait_past(r, [app.keys(q).workers for q in queues] + [app.keys(q).running for q in queues])

    caplog.set_level(logging.INFO, logger="orchestrator.scheduler")
    scheduler = Scheduler(app, SchedulerSettings(queues=queues, promote=False))

    async def one_pass() -> PassReport:
        try:
            return await scheduler.run_pass()
        finally:
            await app.aclose()

    report = asyncio.run(one_pass())

    assert sorted(q for q, _, _ in report.dead_workers) == ["a", "b", "c"]
    assert len(report.reaped) == 6
    monitor = [rec.getMessage() for rec in caplog.records if rec.getMessage().startswith("[Monitor]")]
    assert len(monitor) == 1, monitor
    assert monitor[0].startswith("[Monitor] Worker w1 unresponsive (last heartbeat ")
    assert monitor[0].endswith("requeued 6 tasks")
