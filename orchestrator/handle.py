"""``TaskHandle``: what ``enqueue`` returns, to follow one task to its end.

Owns reading one task's state and waiting for its outcome (result or error), sync and
async, by polling its record with backoff. Generic in the result's type: a handle from
``fn.delay`` is a ``TaskHandle[R]`` for the task's return annotation (the awaited type for
an ``async def``), one from a name (``app.enqueue("mod:fn")``) a ``TaskHandle[Any]``; the
parameter exists for type checkers only (nothing is checked at run time). Does not enqueue (``client``) or change a
task's state other than by asking ``Orchestrator.cancel``.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Generic, TypeVar, cast

from .errors import MalformedRecord, ResultTimeout, TaskCancelled, TaskFailed, TaskNotFound
from .models import Task, TaskState
from .reading import text
from .redis_calls import redis_calls
from .sanitize import escape

if TYPE_CHECKING:
    from .client import Orchestrator

R_co = TypeVar("R_co", covariant=True)  # the task's result: a handle only hands it out


class TaskHandle(Generic[R_co]):
    """A reference to an enqueued task; ``result()`` returns an ``R_co``."""

    POLL_MIN = 0.005
    POLL_MAX = 0.2

    def __init__(self, app: Orchestrator, task_id: str, queue: str, *, created: bool = True) -> None:
        self.app = app
        self.id = task_id
        self.queue = queue
        self.created = created  # False when an idempotency key returned an earlier task

    def __repr__(self) -> str:
        return f"TaskHandle(id={self.id!r}, queue={self.queue!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TaskHandle) and (self.id, self.queue) == (other.id, other.queue)

    def __hash__(self) -> int:
        return hash((self.id, self.queue))

    def _state(self, raw: bytes | str | None) -> TaskState:
        if raw is None:
            raise TaskNotFound(f"no task {self.id} in queue {self.queue!r}", task_id=self.id, queue=self.queue)
        try:
            return TaskState(text(raw))
        except ValueError:  # written by hand: the task is malformed, the handle's caller is told so
            raise MalformedRecord(
                f"task {self.id} in queue {self.queue!r} has the state {escape(raw)!r}, which is not a TaskState",
                task_id=self.id, queue=self.queue,
            ) from None

    def status(self) -> TaskState:
        with redis_calls():
            return self._state(self.app.redis.hget(self.app.keys(self.queue).task(self.id), "state"))

    async def astatus(self) -> TaskState:
        with redis_calls():
            raw = await self.app.aredis.hget(self.app.keys(self.queue).task(self.id), "state")
        return self._state(raw)

    def info(self) -> Task:
        return self.app.get_task(self.id, self.queue)

    async def ainfo(self) -> Task:
        return await self.app.aget_task(self.id, self.queue)

    def cancel(self) -> TaskState:
        return self.app.cancel(self.id, self.queue)

    async def acancel(self) -> TaskState:
        return await self.app.acancel(self.id, self.queue)

    def _outcome(self, task: Task) -> R_co:
        if task.state is TaskState.SUCCESS:
            return cast("R_co", task.result)  # decoded JSON: its type is the task's annotation's word
        if task.state is TaskState.FAILED:
            raise TaskFailed(task.id, task.error.model_dump() if task.error else None, queue=task.queue)
        raise TaskCancelled(f"task {task.id} was cancelled", task_id=task.id, queue=task.queue, state=task.state)

    def _timed_out(self, timeout: float | None) -> ResultTimeout:
        return ResultTimeout(f"task {self.id} did not finish within {timeout} s", task_id=self.id, queue=self.queue)

    def result(self, timeout: float | None = None) -> R_co:
        """Wait for the task to end; return its result or raise its error.

        Raises TaskFailed, TaskCancelled, or ResultTimeout when ``timeout`` seconds pass first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = self.POLL_MIN
        while True:
            if self.status().is_final:
                return self._outcome(self.info())
            if deadline is not None and time.monotonic() >= deadline:
                raise self._timed_out(timeout)
            time.sleep(pause)
            pause = min(pause * 2, self.POLL_MAX)

    async def aresult(self, timeout: float | None = None) -> R_co:
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = self.POLL_MIN
        while True:
            if (await self.astatus()).is_final:
                return self._outcome(await self.ainfo())
            if deadline is not None and time.monotonic() >= deadline:
                raise self._timed_out(timeout)
            await asyncio.sleep(pause)
            pause = min(pause * 2, self.POLL_MAX)

