"""How a worker calls a task function: on the loop, in a thread, or in a child process.

Owns the worker's execution pools and what a task function sees while it runs: async
functions run on the event loop, sync ones in a thread pool (or inline with
``pool="asyncio"``, or in a process pool that can kill a task at its timeout), each with
``current_task()`` set (the thread pool is ``threads.ThreadLane``); ``within`` bounds a call by
the task's timeout. Keeps count of
threads that run on after their task was abandoned: a thread cannot be stopped, so it
keeps its slot until it returns. Does not talk to Redis (``worker``) nor decide what an
outcome means.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import sys
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any, TypeVar

from ..context import TaskContext, _current
from ..errors import Deadline as Deadline  # re-exported: the worker catches it from here
from ..sanitize import get_logger
from ..transitions import Lease
from .pool import ProcessPool
from .threads import Call, ThreadLane

log = get_logger(__name__)
T = TypeVar("T")


async def within(work: Awaitable[T], timeout: float | None) -> T:
    """Await ``work`` with a deadline; ``asyncio.timeout`` spares wait_for's extra task on 3.11+.

    On 3.11+ the deadline firing raises Deadline: an event loop's timers may fire a little
    before ``time.monotonic()`` says the time is up (uvloop counts in whole milliseconds),
    so the elapsed time cannot tell a timeout from a TimeoutError the task raised itself.
    """
    if timeout is None:
        return await work
    if sys.version_info >= (3, 11):
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                return await work
        except TimeoutError as exc:
            if deadline.expired():
                raise Deadline(f"task timed out after {timeout:g} s") from exc
            raise
    return await asyncio.wait_for(work, timeout)


class Runner:
    """The pools of one worker: ``await invoke(fn, lease, context)`` runs one task function."""

    def __init__(
        self, concurrency: int, pool: str, apps: tuple[str, ...], worker_id: str, on_slot_freed: Callable[[], None]
    ) -> None:
        self.pool = pool
        self._tag = f"[Worker {worker_id}]"
        self._on_slot_freed = on_slot_freed
        self._threads = ThreadLane(concurrency, f"orch-{worker_id}")
        self._processes = ProcessPool(concurrency, apps) if pool == "process" else None
        self._stuck: set[Call] = set()  # threads of abandoned tasks, still holding their slot
        self.stopped_in: dict[str, FrameType] = {}  # task id -> its thread's frame when it was abandoned

    @property
    def stuck(self) -> int:
        """Threads that run on after their task was abandoned: each still holds a slot."""
        return len(self._stuck)

    def close(self) -> None:
        self._threads.close()
        if self._processes is not None:
            self._processes.close()

    async def invoke(self, fn: Callable[..., Any], lease: Lease, context: TaskContext) -> Any:
        if inspect.iscoroutinefunction(fn):
            reset = _current.set(context)
            try:
                return await fn(*lease.args, **lease.kwargs)
            finally:
                _current.reset(reset)
        if self._processes is not None:
            return await self._processes.run(lease.name, lease.args, lease.kwargs, None, context)
        call = functools.partial(fn, *lease.args, **lease.kwargs)
        ctx = contextvars.copy_context()
        ctx.run(_current.set, context)
        if self.pool == "asyncio":
            return ctx.run(call)  # inline on the loop: fastest, but blocks heartbeats while it runs
        return await self._in_thread(ctx, call, lease)

    async def _in_thread(self, ctx: contextvars.Context, call: Callable[[], T], lease: Lease) -> T:
        """Run ``call`` in the thread pool (``threads.ThreadLane``). A thread cannot be stopped:
        when its task is abandoned (timeout, cancel, lost lease, shutdown) it keeps its slot
        until it returns, so the worker never claims a task it has no thread for."""
        handed = self._threads.submit(ctx, call)
        try:
            result: T = await handed.future
            return result
        except asyncio.CancelledError:
            ident = self._threads.thread_of(handed)
            frame = sys._current_frames().get(ident) if ident is not None else None
            if frame is not None:  # where the task was (a timeout's record shows it)
                self.stopped_in[lease.task_id] = frame
            if self._threads.abandon(handed, functools.partial(self._thread_returned, handed)):
                log.warning("%s Task %s stopped, but its thread runs on and keeps its slot", self._tag, lease.task_id)
                self._stuck.add(handed)
            raise

    def _thread_returned(self, handed: Call) -> None:
        self._stuck.discard(handed)
        self._on_slot_freed()
