"""The scheduler behind ``orch scheduler`` and ``orch reaper``: promote, reap, sample and roll up.

Owns a stateless loop: each pass promotes due scheduled and retrying tasks to pending
and reaps tasks whose lease expired (retrying or failing them), in bounded batches, so
one pass costs in proportion to the work due, not to the number of tasks stored. About
once a minute per queue it also samples the live workers' load into the minute's series
and rolls complete quarter hours of the series up (rollup.lua). Any number may run at
once: every move is one atomic script, so nothing moves twice, and a minute is sampled
and a quarter rolled up once whoever calls.
Does not run tasks (``worker``) nor configure logging (``cli``).
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .complaints import Complaints, describe, server_wide
from .config import SchedulerSettings
from .health import first_contact, startup_checks
from .keys import queues_key
from .known_queues import aknown_queues
from .metrics_records import BACKFILL_QUARTERS, MINUTE_MS
from .models import TaskState
from .reading import RIDE_OUT
from .sanitize import get_logger, redis_error_text
from .schedule_engine import SET_ASIDE_MS, fire_due
from .script_calls import arun
from .transitions import PromoteReply, ReapReply, RollupReply

if TYPE_CHECKING:  # not at run time: Orchestrator.run_until_idle imports this module
    from .client import Orchestrator

log = get_logger(__name__)
UNAVAILABLE = RIDE_OUT  # ridden out with a backoff (see reading.RIDE_OUT)
MAX_CALLS_PER_PASS = 20  # per queue and kind: a backlog drains over passes, others still get served
ROLLUP_BATCH = BACKFILL_QUARTERS  # quarters one rollup call may roll up: a catch-up in one walk


@dataclass
class PassReport:
    """What one pass did, for logs and tests."""

    promoted: int = 0
    reaped: list[tuple[str, str, TaskState]] = field(default_factory=list)  # queue, task, new state
    dead_workers: list[tuple[str, str, int | None]] = field(default_factory=list)  # queue, worker, last seen
    sampled: list[str] = field(default_factory=list)  # queues whose minute's load this pass sampled
    rolled: int = 0  # quarter hours rolled up
    schedule_tasks: int = 0  # tasks created by periodic schedules' ticks
    schedules_set_aside: list[tuple[str, str]] = field(default_factory=list)  # queue, schedule: record does not read


class Scheduler:
    def __init__(self, app: Orchestrator, settings: SchedulerSettings) -> None:
        self.app = app
        self.settings = settings
        for queue in settings.queues:
            app._scripts(queue)  # validate names up front
        self._stop_event: asyncio.Event | None = None
        self._stopping = False
        self.passes = 0
        self.complaints = Complaints(log, "[Scheduler]")
        self.rollup_due: dict[str, float] = {}  # queue -> monotonic time of its next rollup call

    @property
    def stopping(self) -> bool:
        return self._stopping

    def stop(self) -> None:
        self._stopping = True
        if self._stop_event is not None:
            self._stop_event.set()

    async def queues(self) -> list[str]:
        """The queues given with -q, else every valid name of the known-queues set (bad ones reported)."""
        if self.settings.queues:
            return list(self.settings.queues)
        known = await aknown_queues(self.app.aredis, self.app.settings.prefix)
        subject = queues_key(self.app.settings.prefix)
        if known.complaints:
            self.complaints.report(subject, "; ".join(known.complaints))
        else:
            self.complaints.clear(subject)
        return known.names

    async def run(self) -> None:
        self._stop_event = asyncio.Event()
        if self._stopping:
            self._stop_event.set()
        roles = [r for r, on in (("promote", self.settings.promote), ("reap", self.settings.reap)) if on]
        log.info("[Scheduler] Started: %s every %g s", " + ".join(roles), self.settings.interval)
        failures = 0
        try:
            while not self._stopping:
                try:
                    await self.run_pass()
                    failures = 0
                    delay = self.settings.interval
                except UNAVAILABLE as exc:
                    failures += 1
                    delay = min(30.0, 0.2 * 2 ** min(failures, 8))
                    log.warning("[Scheduler] Redis unavailable (%s); retrying in %.1f s", redis_error_text(exc), delay)
                except Exception:  # a bug must not stop promoting and reaping for good
                    failures += 1
                    delay = min(30.0, 0.2 * 2 ** min(failures, 8))
                    log.exception("[Scheduler] Unexpected error in a pass; retrying in %.1f s", delay)
                with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                    await asyncio.wait_for(self._stop_event.wait(), delay)
        finally:
            await self.app.aclose()
        log.info("[Scheduler] Stopped after %d passes", self.passes)

    async def run_pass(self) -> PassReport:
        """Serve each queue; a queue whose keys or records are broken is reported and skipped,
        the others are served. A server-wide failure (unreachable, busy...) ends the pass."""
        report = PassReport()
        replies: list[ReapReply] = []
        try:
            for queue in await self.queues():
                try:
                    await self._serve(queue, report, replies)
                except Exception as exc:
                    if server_wide(exc):
                        raise
                    self.complaints.report(f"queue {queue}", describe(exc))
                else:
                    self.complaints.clear(f"queue {queue}")
        finally:
            self._log_reap(replies)  # after every queue: a dead worker of three queues is one line
        self.passes += 1
        return report

    async def _serve(self, queue: str, report: PassReport, replies: list[ReapReply]) -> None:
        if self.settings.promote:
            report.promoted += await self._promote(queue)
            await self._fire_schedules(queue, report)
        if self.settings.reap:
            await self._reap(queue, report, replies)
        if self.settings.rollups:
            await self._rollup(queue, report)

    async def _fire_schedules(self, queue: str, report: PassReport) -> None:
        """Fire the queue's due periodic schedules (each tick once, whoever fires: schedule_engine)."""
        fired = await fire_due(self.app, queue, self.settings.batch)
        report.schedule_tasks += fired.created
        report.schedules_set_aside += [(queue, sid) for sid, _ in fired.set_aside]
        if fired.created:
            plural = "" if fired.created == 1 else "s"
            log.info("[Scheduler] Fired %d periodic task%s in queue %s", fired.created, plural, queue)
        for sid, why in fired.set_aside:
            log.warning(
                "[Scheduler] Schedule %s of queue %s set aside for %d s, its record does not read: %s "
                "(fix it, declare it again or remove it)", sid, queue, SET_ASIDE_MS // 1000, why,
            )
        subject = f"schedules of queue {queue}"
        if fired.errors:
            self.complaints.report(subject, "; ".join(fired.errors[:5]))
        else:
            self.complaints.clear(subject)

    async def _rollup(self, queue: str, report: PassReport) -> None:
        """Sample the load and roll up complete quarters: one call a minute per queue (at the
        first pass of each Redis minute; a second call, or another scheduler's, changes nothing)."""
        if time.monotonic() < self.rollup_due.get(queue, 0.0):
            return
        for _ in range(MAX_CALLS_PER_PASS):
            reply: RollupReply = await arun(self.app.aredis, self.app._scripts(queue).rollup(ROLLUP_BATCH))
            report.sampled += [queue] if reply.sampled else []
            report.rolled += reply.rolled
            if not reply.more:
                wait_ms = MINUTE_MS - reply.now_ms % MINUTE_MS
                self.rollup_due[queue] = time.monotonic() + wait_ms / 1000
                return

    async def _promote(self, queue: str) -> int:
        moved = 0
        for _ in range(MAX_CALLS_PER_PASS):
            reply: PromoteReply = await arun(self.app.aredis, self.app._scripts(queue).promote(self.settings.batch))
            moved += reply.moved
            if not reply.more:
                break
        if moved:
            log.info("[Scheduler] Promoted %d due task%s in queue %s", moved, "" if moved == 1 else "s", queue)
        return moved

    async def _reap(self, queue: str, report: PassReport, replies: list[ReapReply]) -> None:
        """Reap in batches, each reply added to ``replies`` as it comes (logged even if a later batch fails)."""
        for _ in range(MAX_CALLS_PER_PASS):
            call = self.app._scripts(queue).reap(self.settings.batch, ttl_ms=self.app.ttl_ms)
            reply: ReapReply = await arun(self.app.aredis, call)
            replies.append(reply)
            report.reaped += [(queue, t.task_id, t.state) for t in reply.tasks]
            report.dead_workers += [(queue, w, seen) for w, seen in reply.dead_workers]
            if not reply.more:
                break

    @staticmethod
    def _log_reap(replies: list[ReapReply]) -> None:
        """One [Monitor] line per dead worker over every queue of the pass (a worker is
        registered in each queue it serves), then one per task not told by those lines."""
        tasks = [task for reply in replies for task in reply.tasks]
        by_worker = Counter(t.worker for t in tasks)
        last_seen_of: dict[str, int | None] = {}
        for reply in replies:
            for worker, seen in reply.dead_workers:
                last_seen_of[worker] = max(seen or 0, last_seen_of.get(worker) or 0) or None
        now = time.time() * 1000
        for worker, last_seen in last_seen_of.items():
            ago = f"last heartbeat {(now - last_seen) / 1000:.0f} s ago" if last_seen else "no heartbeat"
            count = by_worker.pop(worker, 0)
            log.warning(
                "[Monitor] Worker %s unresponsive (%s), requeued %d task%s",
                worker, ago, count, "" if count == 1 else "s",
            )
        for task in tasks:
            verb = VERBS.get(task.state, str(task.state))
            if task.worker in by_worker:
                log.warning("[Monitor] Lease of task %s expired on worker %s: %s", task.task_id, task.worker, verb)
            elif task.state is TaskState.FAILED:
                log.warning("[Monitor] Task %s FAILED: lease expired with no attempts left", task.task_id)


VERBS = {  # what a reap did to a task, as the [Monitor] line says it
    TaskState.RETRYING: "requeued for retry",
    TaskState.FAILED: "FAILED (no attempts left, or its record malformed)",
    TaskState.CANCELLED: "CANCELLED (its cancel had been requested)",
}


def run_scheduler(app: Orchestrator, settings: SchedulerSettings) -> int:
    """Run until SIGTERM/SIGINT; stopping is immediate (the scheduler holds no state)."""
    import signal

    scheduler = Scheduler(app, settings)
    first_contact(app.redis, tag="[Scheduler]", log=log)
    startup_checks(app.redis, strict=settings.strict, tag="[Scheduler]", log=log)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, scheduler.stop)
        await scheduler.run()

    asyncio.run(main())
    return 0
