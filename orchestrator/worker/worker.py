"""The asyncio worker behind ``orch worker``: claim, run, heartbeat, complete or fail.

Owns one process's loop: it claims at most its free slots in one script call per
queue (a slot is free once its function returned, so a claim joins the outcome's pipeline),
runs each task (through ``runner``: on the loop, in a thread, or in a child
process) within its timeout, renews all its leases in one heartbeat call per queue, and
commits each outcome with the task's lease token (``commit``). Idle, it blocks on the
queues' wake-up keys. It holds nothing that matters after it dies: a killed worker's
leases expire and the reaper requeues them. Does not promote or reap (``scheduler``), nor
configure logging (``cli``).
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from redis.exceptions import ResponseError

from ..complaints import Complaints, describe, server_wide
from ..config import WorkerSettings
from ..connection import block_limit, wake_groups
from ..context import TaskContext
from ..encoding import TaskOptions
from ..errors import (
    InvalidPayload,
    UnknownTask,
)
from ..models import FailMode, dumps
from ..sanitize import get_logger, redis_error_text
from ..script_calls import arun
from ..shards import aread_layouts_of
from ..task_function import TaskFunction
from ..transitions import Lease
from ..version import __version__
from .cancels import CancelListener
from .commit import UNAVAILABLE, Commits, Running
from .outcome import judge
from .pipeline import Pipeliner
from .progress import Reporter
from .runner import Runner, within

SHARDS_REFRESH_S = 5.0  # a worker reads the shard layouts again this often

if TYPE_CHECKING:  # not at run time: Orchestrator.run_until_idle imports this module
    from ..client import Orchestrator

log = get_logger(__name__)


class Worker(Commits):
    """One worker process's state; ``await run()`` until ``stop()``."""

    def __init__(
        self,
        app: Orchestrator,
        settings: WorkerSettings,
        functions: Mapping[str, Callable[..., Any] | TaskFunction[..., Any]] | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.id = settings.name or f"{socket.gethostname()}-{os.getpid()}"
        self.tasks = _task_table(app, functions if functions is not None else app.registry)
        for queue, _ in settings.queues:
            app._scripts(queue)  # validates every name before anything runs
        self.lease_ms = round(app.settings.lease_timeout * 1000)
        self.heartbeat = settings.heartbeat_for(app.settings.lease_timeout)  # refuses one that loses leases
        self._wake: list[list[str]] | None = None  # the wake-up keys, grouped per BLPOP
        self._blocking: dict[int, asyncio.Future[Any]] = {}  # cluster: each group's BLPOP in flight
        self._block_s = min(settings.idle_wait, block_limit(app.settings.lease_timeout))  # below the socket timeout
        self.started_at = int(time.time() * 1000)
        self.processed = 0  # tasks that ended here, however: finished, released or dropped
        self.finished = 0  # outcomes recorded (succeeded, failed, retrying, cancelled)
        self.released = 0  # unfinished at shutdown, given back to pending
        self._running: dict[tuple[str, str], Running] = {}
        self._beating = True
        self._stopping = False
        self._stop_event: asyncio.Event | None = None
        self._slot_freed: asyncio.Event | None = None
        self._idle_in: asyncio.Task[Any] | None = None  # the claim loop's task while it waits for work (_idle)
        self._idle_ended = False  # stop() cancelled that wait
        self._committing = 0
        self._runner: Runner | None = None
        self._tag = f"[Worker {self.id}]"
        self._complaints = Complaints(log, self._tag)  # queues whose keys or records are broken
        self._claim_failed: Exception | None = None  # Redis failed after some queues' claims (_claim)
        self._reporter = Reporter(app)  # what current_task().progress() sends through
        self._asked = settings.queues  # as given: a sharded queue stands for its shards (_read_shards)
        self._groups: list[tuple[int, tuple[str, ...]]] = [(w, (q,)) for q, w in settings.queues]
        self._turns: dict[tuple[str, ...], int] = {}  # each sharded queue's next first shard
        self._shards_read = -SHARDS_REFRESH_S

    # ---------------------------------------------------------------- control

    @property
    def stopping(self) -> bool:
        return self._stopping

    def stop(self) -> None:
        """Stop claiming; running tasks get the grace period, then are released."""
        if not self._stopping:
            log.info("%s Stopping: no new claims, %d running", self._tag, len(self._running))
        self._stopping = True
        if self._stop_event is not None:
            self._stop_event.set()
        if self._slot_freed is not None:
            self._slot_freed.set()  # the claim loop waits on it
        if self._idle_in is not None:  # the claim loop waits for work: end that wait
            self._idle_in.cancel()
            self._idle_in, self._idle_ended = None, True

    def _prepare(self) -> None:
        """What running tasks needs, made on the running loop (``run``; ``drain.DrainingWorker``)."""
        self._stop_event = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._pipeliner = Pipeliner(self.app.aredis, self.app.settings.replication)
        if self._stopping:
            self._stop_event.set()
        self._runner = Runner(
            self.settings.concurrency, self.settings.pool, self.settings.apps, self.id, self._slot_freed.set
        )

    async def run(self) -> None:
        self._prepare()
        assert self._runner is not None
        await self._read_shards()
        queues = ", ".join(q for q, _ in self.settings.queues)
        loop = "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio"
        log.info(
            "%s Started: queues %s, concurrency %d, pool %s, loop %s, pid %d",
            self._tag, queues, self.settings.concurrency, self.settings.pool, loop, os.getpid(),
        )
        heartbeat = asyncio.create_task(self._heartbeat_loop())
        channels = {self.app.keys(q).cancels: q for q, _ in self.settings.queues}
        cancels = asyncio.create_task(
            CancelListener(self.app.aredis, channels, self._lease_key, self._cancel_heard, self._tag).run()
        )
        try:
            await self._claim_loop()
        finally:
            try:
                cancels.cancel()
                await self._shutdown()
            finally:
                self._beating = False
                await asyncio.gather(cancels, return_exceptions=True)
                await self._end(heartbeat)
                await self._deregister()
                self._runner.close()
                await self._end_blocking()
                await self.app.aclose()
        p = self._pipeliner
        dropped = self.processed - self.finished - self.released
        log.info("%s Stopped: %d finished, %d released%s (%d claims and outcomes in %d round trips)",
                 self._tag, self.finished, self.released, f", {dropped} dropped (lease lost)" if dropped else "",
                 p.calls, p.round_trips)

    # ------------------------------------------------------------------ claim

    async def _claim_loop(self) -> None:
        assert self._slot_freed is not None
        failures = 0
        woken = False  # the last pass waited for work: its claim goes at once (Pipeliner.call_now)
        while not self._stopping:
            free = self.settings.concurrency - (len(self._running) - self._committing) - self._stuck()
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()  # set by stop() too; one hop, so a claim joins the outcome's pipeline
                continue
            try:
                leases, woken = await self._claim(free, now=woken), False
                if self._claim_failed is not None:  # Redis failed after some queues' claims: those are started
                    for lease in leases:
                        self._start(lease)
                    failures, exc, self._claim_failed = failures + 1, self._claim_failed, None
                    await self._until_stopped(self._backoff("claim", exc, failures))
                    continue
                if not leases:
                    await self._idle()
                    woken = True
                failures = 0
            except UNAVAILABLE as exc:
                failures += 1
                await self._until_stopped(self._backoff("claim", exc, failures))
                continue
            except Exception:  # a bug must not kill the worker and orphan its running tasks
                failures += 1
                log.exception("%s Unexpected error while claiming; retrying", self._tag)
                await self._until_stopped(asyncio.sleep(min(30.0, 0.1 * 2 ** min(failures, 8))))
                continue
            for lease in leases:
                self._start(lease)

    async def _claim(self, free: int, now: bool = False) -> list[Lease]:
        if time.monotonic() - self._shards_read >= SHARDS_REFRESH_S:
            await self._read_shards()
        leases: list[Lease] = []
        for queue in self._queue_order():
            call = self.app._scripts(queue).claim(self.id, free - len(leases), self.lease_ms)
            try:
                claimed: list[Lease] = await (self._pipeliner.call_now(call) if now else self._pipeliner.call(call))
            except Exception as exc:
                if leases and server_wide(exc):  # leases in hand must not be dropped (they would be reaped)
                    self._claim_failed = exc  # the claim loop starts them, then backs off
                    return leases
                self._queue_failed(queue, exc)  # a broken queue must not starve the others
                continue
            if self._complaints:
                self._complaints.clear(f"queue {queue}")
            leases += claimed
            if len(leases) >= free:
                break
        return leases

    def _queue_order(self) -> list[str]:
        """Strict order unless weights differ; then a weighted random order per claim. A
        sharded queue's shards come in rotation: each claim starts one shard further (the
        first claim at a random one), so every shard is looked at first in turn."""
        groups = list(self._groups)
        if len({w for w, _ in groups}) > 1:
            ordered = []
            while groups:
                ordered.append(groups.pop(random.choices(range(len(groups)), weights=[w for w, _ in groups])[0]))
            groups = ordered
        order: list[str] = []
        for _, shards in groups:
            if len(shards) == 1:
                order += shards
                continue
            start = self._turns.get(shards, random.randrange(len(shards)))
            self._turns[shards] = (start + 1) % len(shards)
            order += shards[start:] + shards[:start]
        return order

    async def _read_shards(self) -> None:
        """Serve each sharded queue asked for through its shards (read again every
        SHARDS_REFRESH_S, so a new layout is followed); a failed read keeps the last one."""
        self._shards_read = time.monotonic()
        try:
            layouts = await aread_layouts_of(self.app.aredis, self.app.settings.prefix, [q for q, _ in self._asked])
        except Exception as exc:  # Redis down at start: the claim loop reports and backs off
            self._complaints.report("shard layouts", describe(exc))
            return
        groups = [(w, layouts.get(q, (q,))) for q, w in self._asked]
        if groups == self._groups:
            return
        self._groups = groups
        self.settings = self.settings.model_copy(update={"queues": tuple((q, w) for w, qs in groups for q in qs)})
        self._wake = None  # the wake-up keys of the new shards
        await self._end_blocking()  # the BLPOPs in flight wait on the old groups
        log.info("%s Serving shards: %s", self._tag, ", ".join(q for _, qs in groups if len(qs) > 1 for q in qs))

    def _queue_failed(self, queue: str, exc: Exception) -> None:
        """A call about one queue failed: Redis-wide failures propagate (backoff), the rest
        is that queue's problem, reported once per interval."""
        if server_wide(exc):
            raise exc
        self._complaints.report(f"queue {queue}", describe(exc))

    async def _idle(self) -> None:
        """Wait for work in the claim loop's own task, which stop() cancels: a wake-up token
        resumes the claim loop in one hop of the event loop (with a task per wait and one
        for the stop event, joined by asyncio.wait, it took five: ~1/10 of the idle latency)."""
        task = asyncio.current_task()
        if self._stopping or task is None:
            return
        self._idle_in, self._idle_ended = task, False
        try:
            await self._wait_for_work()
        except asyncio.CancelledError:
            if not self._idle_ended:
                raise
            if sys.version_info >= (3, 11) and task.uncancel() > 0:
                raise  # cancelled from outside too
        finally:
            self._idle_in = None

    async def _wait_for_work(self) -> None:
        """Block on the queues' wake-up keys; enqueue and promote push a token there."""
        try:
            await self._block(self._wake_groups())
        except ResponseError as exc:  # a wake-up key of the wrong type: poll instead of blocking
            if server_wide(exc):
                raise
            self._complaints.report("wake-up keys", describe(exc))
            await asyncio.sleep(self.settings.idle_wait)

    def _wake_groups(self) -> list[list[str]]:
        """The wake-up keys, one BLPOP's worth each: all of them on one Redis; on a Redis
        Cluster one group per slot (a BLPOP must not cross slots), the queues' hash tags."""
        if self._wake is None:
            wake = [self.app.keys(q).wake for q, _ in self.settings.queues]
            self._wake = wake_groups(self.app.aredis, wake)
        return self._wake

    async def _block(self, groups: list[list[str]]) -> None:
        """BLPOP each group at once (one connection each) until one wakes. The others keep
        waiting for the next idle spell (cancelling a blocked read would cost a reconnection
        each time); a token one of them pops meanwhile only makes that wait end at once."""
        if len(groups) == 1:
            await self.app.aredis.blpop(groups[0], timeout=self._block_s)
            return
        for i, group in enumerate(groups):
            if i not in self._blocking:
                self._blocking[i] = asyncio.ensure_future(self.app.aredis.blpop(group, timeout=self._block_s))
        await asyncio.wait(self._blocking.values(), return_when=asyncio.FIRST_COMPLETED)
        for i, wait in list(self._blocking.items()):
            if wait.done():
                del self._blocking[i]
                wait.result()  # its error, if it failed

    async def _end_blocking(self) -> None:
        waits = list(self._blocking.values())
        self._blocking.clear()
        for wait in waits:
            wait.cancel()
        await asyncio.gather(*waits, return_exceptions=True)

    async def _until_stopped(self, awaitable: Awaitable[Any]) -> None:
        """Await ``awaitable`` unless stop() comes first (then cancel it)."""
        assert self._stop_event is not None
        work = asyncio.ensure_future(awaitable)
        stop = asyncio.ensure_future(self._stop_event.wait())
        try:
            await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in (work, stop):
                fut.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stop
            with contextlib.suppress(asyncio.CancelledError):
                await work  # re-raises the work's own error, if it failed

    # -------------------------------------------------------------------- run

    def _start(self, lease: Lease) -> None:
        running = Running(lease, time.monotonic())
        self._running[(lease.queue, lease.task_id)] = running
        # One INFO line per task (its outcome): logging cost a fifth of a busy worker's CPU.
        # A retry's claim is worth INFO; a first claim is DEBUG (-v).
        if lease.attempt > 1:
            log.info(
                "%s Claimed task %s (%s, priority %d, attempt %d)",
                self._tag, lease.task_id, lease.name, lease.priority, lease.attempt,
            )
        elif log.isEnabledFor(logging.DEBUG):
            log.debug("%s Claimed task %s (%s, priority %d)", self._tag, lease.task_id, lease.name, lease.priority)
        running.task = asyncio.create_task(self._execute(running))

    async def _execute(self, running: Running) -> None:
        lease = running.lease
        timeout = lease.timeout_ms / 1000 or None
        try:
            try:
                if lease.payload_error:
                    raise InvalidPayload(lease.payload_error)
                task = self.tasks.get(lease.name)
                if task is None:
                    raise UnknownTask(
                        f"no task named {lease.name!r} is registered on worker {self.id}",
                        task_id=lease.task_id, queue=lease.queue,
                    )
                assert self._runner is not None  # made by run() before any claim
                context = TaskContext(
                    lease.task_id, lease.queue, lease.name, lease.attempt, lease.token, self.id, self._reporter
                )
                result = await within(self._runner.invoke(task.fn, lease, context), timeout)
                payload = dumps(result, "result")
            except asyncio.CancelledError:
                if running.stop_reason == "cancel":
                    await self._fail(running, FailMode.CANCELLED, {"type": "Cancelled", "message": "cancel requested"})
                elif running.stop_reason is None:
                    raise
                return
            except Exception as exc:  # a timeout, or the task's policy decides (outcome.judge)
                stack = self._runner.stopped_in.pop(lease.task_id, None) if self._runner is not None else None
                elapsed = time.monotonic() - running.started
                await self._fail(running, *judge(exc, self.tasks.get(lease.name), lease, elapsed, stack))
                return
            await self._complete(running, payload)
        finally:
            self._running.pop((lease.queue, lease.task_id), None)
            if self._runner is not None:
                self._runner.stopped_in.pop(lease.task_id, None)
            self.processed += 1
            if running.committing:
                self._committing -= 1
            else:
                self._free_slot()

    # -------------------------------------------------------------- heartbeat

    async def _end(self, task: asyncio.Task[None]) -> None:
        """Cancel ``task`` until it has ended: on 3.11 a cancel that lands inside redis-py's
        own ``wait_for`` can be swallowed, which once left a stopping worker beating forever."""
        give_up = time.monotonic() + 5
        while not task.done() and time.monotonic() < give_up:
            task.cancel()
            await asyncio.wait({task}, timeout=0.1)
        if not task.done():
            log.warning("%s The heartbeat would not stop; exiting without it", self._tag)
        elif not task.cancelled():
            task.exception()  # retrieved, so asyncio does not report it as lost

    async def _heartbeat_loop(self) -> None:
        """Beat until stopped. It must never end on an error: a worker whose heartbeat died
        would go on claiming tasks whose leases all expire under it."""
        failures = 0
        while self._beating:
            try:
                await self._beat()
                failures = 0
                await asyncio.sleep(self.heartbeat)
            except Exception as exc:
                failures += 1
                what = redis_error_text(exc)
                log.warning("%s Heartbeat failed (%s: %s); retrying", self._tag, type(exc).__name__, what)
                await asyncio.sleep(min(self.heartbeat, 0.2 * failures))

    def _free_slot(self) -> None:
        if self._slot_freed is not None:
            self._slot_freed.set()

    def _stuck(self) -> int:
        return self._runner.stuck if self._runner is not None else 0

    def _info(self) -> dict[str, str | int]:
        running = len(self._running) + self._stuck()
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "concurrency": self.settings.concurrency,
            "running": running,
            "load": f"{running / self.settings.concurrency:.2f}",
            "pool": self.settings.pool,
            "queues": ",".join(q for q, _ in self.settings.queues),
            "processed": self.processed,
            "version": __version__,
            "started_at": self.started_at,
        }

    async def _beat(self) -> None:
        info = self._info()
        for queue, _ in self.settings.queues:
            mine = [(r.lease.task_id, r.lease.token) for r in self._running.values() if r.lease.queue == queue]
            call = self.app._scripts(queue).heartbeat(self.id, self.lease_ms, info, mine)
            try:
                reply = await arun(self.app.aredis, call)
            except Exception as exc:
                self._queue_failed(queue, exc)  # the other queues' leases must still be renewed
                continue
            for task_id in reply.lost:
                self._interrupt(queue, task_id, "lost")
            for task_id in reply.cancel:
                self._interrupt(queue, task_id, "cancel")

    def _lease_key(self, queue: str, task_id: str) -> tuple[str, str] | None:
        """The record key and token of a task this worker runs (for the cancel listener)."""
        running = self._running.get((queue, task_id))
        return None if running is None else (self.app.keys(queue).task(task_id), running.lease.token)

    def _cancel_heard(self, queue: str, task_id: str) -> None:
        self._interrupt(queue, task_id, "cancel")

    def _interrupt(self, queue: str, task_id: str, reason: str) -> None:
        running = self._running.get((queue, task_id))
        if running is None or running.stop_reason is not None or running.task is None or running.committing:
            return
        running.stop_reason = reason
        if reason == "lost":
            log.warning("%s Lease of task %s lost; stopping it, its result will be dropped", self._tag, task_id)
        else:
            log.info("%s Cancel requested for task %s; stopping it", self._tag, task_id)
        running.task.cancel()

    # --------------------------------------------------------------- shutdown

    async def _shutdown(self) -> None:
        tasks = [r.task for r in self._running.values() if r.task is not None]
        if tasks:
            log.info("%s Waiting up to %g s for %d running tasks", self._tag, self.settings.grace, len(tasks))
            await asyncio.wait(tasks, timeout=self.settings.grace)
        leftovers = list(self._running.values())
        if not leftovers:
            return
        for running in leftovers:
            running.stop_reason = "shutdown"
        released = 0
        for queue, _ in self.settings.queues:
            pairs = [(r.lease.task_id, r.lease.token) for r in leftovers if r.lease.queue == queue]
            if pairs:
                with contextlib.suppress(*UNAVAILABLE):
                    call = self.app._scripts(queue).release(pairs, ttl_ms=self.app.ttl_ms)
                    ids: list[str] = await arun(self.app.aredis, call)
                    released += len(ids)
        self.released = released
        log.info("%s Released %d unfinished tasks back to pending", self._tag, released)
        for running in leftovers:
            if running.task is not None:
                running.task.cancel()
        await asyncio.gather(*(r.task for r in leftovers if r.task is not None), return_exceptions=True)

    async def _deregister(self) -> None:
        for queue, _ in self.settings.queues:
            with contextlib.suppress(*UNAVAILABLE):
                await arun(self.app.aredis, self.app._scripts(queue).deregister(self.id))


def _task_table(
    app: Orchestrator, functions: Mapping[str, Callable[..., Any] | TaskFunction[..., Any]]
) -> dict[str, TaskFunction[..., Any]]:
    """Every task by name, with its options (a bare function gets the defaults)."""
    return {
        name: fn if isinstance(fn, TaskFunction) else TaskFunction(app, fn, name, TaskOptions())
        for name, fn in functions.items()
    }
