"""One pass of each in-process Scheduler, for the tests that drive schedulers by hand
(roll-ups, schedules): no process, no loop of its own, each scheduler's client closed after."""

from __future__ import annotations

import asyncio

from orchestrator.scheduler import PassReport, Scheduler


def scheduler_passes(*schedulers: Scheduler) -> list[PassReport]:
    """Run one pass of each scheduler, in order, and return their reports."""

    async def go() -> list[PassReport]:
        try:
            return [await s.run_pass() for s in schedulers]
        finally:
            for s in schedulers:
                await s.app.aclose()

    return asyncio.run(go())
