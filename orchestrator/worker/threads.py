"""The worker's thread pool for ``def`` tasks: a hand-off that costs the loop little per task.

Owns up to ``size`` threads that take calls from one queue and hand their outcomes back to
the event loop. Threads are started as needed: a call never waits while the pool has fewer
threads than ``size`` (more calls queued than threads idle starts one). The outcomes of
calls that end close together reach the loop in one wake-up: a thread appends to a deque
and signals the loop only when no signal is pending already, so a busy pool costs one
``call_soon_threadsafe`` (a self-pipe write and an epoll return) per batch rather than per
task, and the commits of those tasks leave in one pipeline (``pipeline``). On Linux the
pool's threads run under SCHED_BATCH (``_no_preempting``): waking one does not preempt the
loop, which holds the GIL while it wakes it. A call cancelled
before a thread took it never runs; one cancelled while it runs goes on (a thread cannot
be stopped) and is reported when it returns. Does not decide what a task's slot is worth
(``runner`` counts abandoned threads) nor talk to Redis.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import threading
from collections import deque
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any

PENDING, RUNNING, DONE, CANCELLED = range(4)


def _no_preempting() -> None:
    """Linux: the calling thread no longer preempts the thread that wakes it (SCHED_BATCH,
    which needs no privilege and keeps the nice value; it changes only wake-up preemption).

    The loop wakes a pool thread per task while it holds the GIL; under the default policy
    the woken thread often took the loop's CPU at once, only to wait for the GIL, and the
    loop, with the GIL, waited for a CPU: ``SimpleQueue.put`` took 105-124 µs per call on
    a busy 2-core machine, 6-11 µs with this. Threads the task starts inherit the policy.
    """
    if hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_BATCH"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))


class Call:
    """One call handed to the pool: its state moves PENDING -> RUNNING -> DONE, or PENDING -> CANCELLED."""

    __slots__ = ("abandoned", "ctx", "fn", "future", "ident", "outcome", "state")

    def __init__(self, ctx: contextvars.Context, fn: Callable[[], Any], future: asyncio.Future[Any]) -> None:
        self.ctx = ctx
        self.fn = fn
        self.future = future
        self.state = PENDING
        self.ident: int | None = None  # the thread running it
        self.abandoned: Callable[[], None] | None = None  # called on the loop once an abandoned call returns
        self.outcome: tuple[bool, Any] = (False, None)


class ThreadLane:
    """``submit(ctx, fn)`` runs ``ctx.run(fn)`` on a pool thread; await the returned call's future."""

    def __init__(self, size: int, name: str) -> None:
        self.size = size
        self._name = name
        self._queue: SimpleQueue[Call | None] = SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0  # threads waiting for a call
        self._queued = 0  # calls no thread has taken yet
        self._done: deque[Call] = deque()
        self._signalled = False  # a _deliver is scheduled on the loop and has not started yet
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def submit(self, ctx: contextvars.Context, fn: Callable[[], Any]) -> Call:
        loop = self._loop = self._loop or asyncio.get_running_loop()
        call = Call(ctx, fn, loop.create_future())
        with self._lock:
            self._queued += 1
            start = self._queued > self._idle and len(self._threads) < self.size
            if start:
                thread = threading.Thread(target=self._work, name=f"{self._name}_{len(self._threads)}", daemon=True)
                self._threads.append(thread)
        if start:
            thread.start()
        self._queue.put(call)
        return call

    def abandon(self, call: Call, on_return: Callable[[], None]) -> bool:
        """The awaiter gave up on ``call``: one no thread took never runs (False); one that runs
        goes on (a thread cannot be stopped), and ``on_return`` is called on the loop when it
        returns (True); one that returned already costs nothing (False)."""
        with self._lock:
            if call.state == PENDING:
                call.state = CANCELLED
                return False
            if call.state == RUNNING:
                call.abandoned = on_return
                return True
            return False

    def thread_of(self, call: Call) -> int | None:
        return call.ident if call.state == RUNNING else None

    def close(self) -> None:
        """No more calls: idle threads exit; a running one ends with its call (daemon: never waited for)."""
        self._closed = True
        for _ in range(len(self._threads)):
            self._queue.put(None)

    # ------------------------------------------------------------------ threads

    def _work(self) -> None:
        _no_preempting()
        queue, lock = self._queue, self._lock
        while True:
            with lock:
                self._idle += 1
            call = queue.get()
            with lock:
                self._idle -= 1
                if call is None:
                    return
                self._queued -= 1
                if call.state != PENDING:  # cancelled before it started
                    continue
                call.state = RUNNING
                call.ident = threading.get_ident()
            try:
                call.outcome = (True, call.ctx.run(call.fn))
            except BaseException as exc:  # the task's own error, delivered to its awaiter
                call.outcome = (False, exc)
            with lock:
                call.state = DONE
                self._done.append(call)
                if self._signalled:
                    continue
                self._signalled = True
            loop = self._loop
            assert loop is not None
            with contextlib.suppress(RuntimeError):  # the loop already closed: the worker is exiting
                loop.call_soon_threadsafe(self._deliver)

    # --------------------------------------------------------------------- loop

    def _deliver(self) -> None:
        """On the loop: every outcome that arrived since the last wake-up."""
        with self._lock:
            self._signalled = False
        done = self._done
        while done:
            call = done.popleft()
            if call.abandoned is not None:
                call.abandoned()
                continue
            future = call.future
            if future.done():
                continue
            ok, value = call.outcome
            call.outcome = (False, None)
            if ok:
                future.set_result(value)
            elif isinstance(value, StopIteration):  # a future refuses it, as a coroutine's return does
                future.set_exception(RuntimeError(f"task raised StopIteration: {value!r}"))
            else:
                future.set_exception(value)
