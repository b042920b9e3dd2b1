"""``TaskHandle``: what ``enqueue`` returns, to follow one task to its end.

Owns reading one task's state and progress and waiting for its outcome (result or
error), sync and async. Waiting subscribes to the task's shard channel
(``QueueKeys.finished``), then marks the record as waited for and reads its state in
one script call (watch.lua; the scripts that end a task publish there only when it is
marked), so an end between the look and the wait is never missed, and looks
again at least every FALLBACK_POLL seconds in case a message is lost (a reconnect, a
failover). Where the channel cannot be subscribed (an ACL without the channel, a
client without pub/sub) it polls with backoff instead. Generic in the result's type: a
handle from ``fn.delay`` is a ``TaskHandle[R]`` for the task's return annotation (the
awaited type for an ``async def``), one from a name (``app.enqueue("mod:fn")``) a
``TaskHandle[Any]``; the parameter exists for type checkers only (nothing is checked at
run time). Does not enqueue (``client``) or change a task's state other than by asking
``Orchestrator.cancel``.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from redis import exceptions as redis_errors

from . import listeners
from .errors import (
    MalformedRecord,
    OutOfMemory,
    RedisCommandError,
    ResultTimeout,
    TaskCancelled,
    TaskFailed,
    TaskNotFound,
)
from .models import PROGRESS_FIELDS, Progress, Task, TaskState, decode_progress
from .reading import text
from .redis_calls import redis_calls
from .sanitize import escape
from .script_calls import arun, run

if TYPE_CHECKING:
    from .client import Orchestrator

R_co = TypeVar("R_co", covariant=True)  # the task's result: a handle only hands it out


class TaskHandle(Generic[R_co]):
    """A reference to an enqueued task; ``result()`` returns an ``R_co``."""

    POLL_MIN = 0.005  # polling (no channel): the first pause, doubling up to POLL_MAX
    POLL_MAX = 0.2
    FALLBACK_POLL = 1.0  # subscribed: the longest wait between two looks at the state

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

    def _progress(self, values: list[Any]) -> Progress | None:
        self._state(values[0])  # TaskNotFound, MalformedRecord
        fraction, data, at = values[1:]
        return decode_progress(text(fraction), data or b"", text(at)) if fraction else None

    def progress(self) -> Progress | None:
        """The last progress the task reported (``current_task().progress``), or None."""
        with redis_calls():
            values = self.app.redis.hmget(self.app.keys(self.queue).task(self.id), "state", *PROGRESS_FIELDS)
        return self._progress(values)

    async def aprogress(self) -> Progress | None:
        with redis_calls():
            values = await self.app.aredis.hmget(self.app.keys(self.queue).task(self.id), "state", *PROGRESS_FIELDS)
        return self._progress(values)

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

        Returns within a few ms of the end (a message on the task's channel wakes it).
        Raises TaskFailed, TaskCancelled, or ResultTimeout when ``timeout`` seconds pass first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if self.status().is_final:  # ended already: no channel needed
            return self._outcome(self.info())
        listener = self._listen()
        reading = False  # inside a read of the listener's connection: closed, not kept, if interrupted
        try:  # (from here: the listener is closed or kept however the wait ends)
            state = self._watch() if listener is not None else None  # marked: its end is published
            if state is None and listener is not None:
                listeners.release(self.app.redis, listener, self._channel)  # the mark was refused (an ACL): poll
                listener = None
            pause = self.POLL_MIN
            while True:
                if (state or self.status()).is_final:
                    return self._outcome(self.info())
                wait = self._wait(deadline, timeout, listener is not None, pause)
                if listener is None:
                    time.sleep(wait)
                    pause = min(pause * 2, self.POLL_MAX)
                    state = None
                    continue
                try:
                    reading = True
                    state = self._heard(listener.get_sharded_message(timeout=wait))
                    reading = False
                except redis_errors.RedisError:  # the connection dropped: look, then wait by polling
                    listener.close()
                    listener = None
                    state = None
        finally:
            if listener is not None:
                if reading:
                    listener.close()
                else:
                    listeners.release(self.app.redis, listener, self._channel)

    async def aresult(self, timeout: float | None = None) -> R_co:
        """``result`` for asyncio programs (its connection kept for the next wait on this loop)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if (await self.astatus()).is_final:
            return self._outcome(await self.ainfo())
        client = self.app.aredis
        listener = await self._alisten()
        reading = False  # inside a read of the listener's connection: closed, not kept, if cancelled
        try:  # (a cancel while it marks the record included)
            state = await self._awatch() if listener is not None else None
            if state is None and listener is not None:
                await listeners.arelease(client, listener, self._channel)  # the mark was refused: poll
                listener = None
            pause = self.POLL_MIN
            while True:
                if (state or await self.astatus()).is_final:
                    return self._outcome(await self.ainfo())
                wait = self._wait(deadline, timeout, listener is not None, pause)
                if listener is None:
                    await asyncio.sleep(wait)
                    pause = min(pause * 2, self.POLL_MAX)
                    state = None
                    continue
                try:
                    reading = True
                    state = self._heard(await listeners.next_message(listener, wait))
                    reading = False
                except redis_errors.RedisError:
                    await listener.aclose()
                    listener = None
                    state = None
        finally:
            if listener is not None:
                if reading:
                    await listener.aclose()
                else:
                    await listeners.arelease(client, listener, self._channel)

    @property
    def _channel(self) -> str:
        return self.app.keys(self.queue).finished(self.id)

    def _heard(self, message: Any) -> TaskState | None:
        """The final state a message on the task's channel announces (None: look it up)."""
        if message is None or message.get("type") != "smessage" or text(message.get("channel")) != self._channel:
            return None
        try:
            state = TaskState(text(message["data"]))
        except ValueError:  # DELETED: the look-up says TaskNotFound
            return None
        return state if state.is_final else None

    def _watch(self) -> TaskState | None:
        """Mark the task as waited for (watch.lua) and return its state; None when the
        mark is refused (a user without the right, Redis out of memory: the caller polls)."""
        try:
            with redis_calls():
                raw = run(self.app.redis, self.app._scripts(self.queue).watch(self.id))
        except (RedisCommandError, OutOfMemory):  # (waiting writes nothing the caller asked for)
            return None
        return self._state(raw)

    async def _awatch(self) -> TaskState | None:
        try:
            with redis_calls():
                raw = await arun(self.app.aredis, self.app._scripts(self.queue).watch(self.id))
        except (RedisCommandError, OutOfMemory):
            return None
        return self._state(raw)

    def _wait(self, deadline: float | None, timeout: float | None, subscribed: bool, pause: float) -> float:
        """How long to wait before the next look (raises ResultTimeout when the time is up)."""
        wait = self.FALLBACK_POLL if subscribed else pause
        if deadline is None:
            return wait
        left = deadline - time.monotonic()
        if left <= 0:
            raise self._timed_out(timeout)
        return min(wait, left)

    def _listen(self) -> Any:
        """A pub/sub connection subscribed to the task's channel (the subscription confirmed),
        or None when it cannot be had: the caller polls."""
        return listeners.subscribe(self.app.redis, self._channel, self.FALLBACK_POLL)

    async def _alisten(self) -> Any:
        return await listeners.asubscribe(self.app.aredis, self._channel, self.FALLBACK_POLL)
