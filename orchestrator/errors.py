"""Every exception orchestrator raises, under one base class.

Owns the exception tree and the table that maps the Lua scripts' stable error codes
to it. Does not raise anything itself.

    OrchestratorError
    ├── ConfigurationError          bad settings, unknown options, unimportable modules
    ├── ValidationError             bad input at enqueue, rejected before anything is written
    │   ├── InvalidQueueName
    │   ├── InvalidPriority
    │   ├── NotSerializable         arguments or a result that are not strict JSON (would not round-trip)
    │   ├── PayloadTooLarge
    │   └── InvalidSchedule         a periodic schedule's declaration: bad cron, unknown time zone, every < 1 s, ...
    ├── TaskNotFound                no such task (or it expired with its retention)
    ├── QueueNotFound               an operator named a queue that was never used
    ├── ShardingRefused             a sharded queue's number of shards changed while tasks wait
    ├── ScheduleNotFound            an operator named a periodic schedule that does not exist
    ├── InvalidTransition           the task's state does not allow the change asked for
    ├── LeaseLost                   the lease token is stale: the task was reaped or released
    ├── TaskFailed                  raised by TaskHandle.result() for a FAILED task
    ├── TaskCancelled               raised by TaskHandle.result() for a CANCELLED task
    ├── ResultTimeout               TaskHandle.result(timeout=) ran out before the task ended
    ├── OutOfMemory                 Redis reached maxmemory (noeviction): the call wrote nothing
    ├── RedisUnavailable            Redis could not be reached (refused, timeout, closed, DNS)
    ├── RedisCommandError           Redis answered with an error that is not one of ours (auth, db, ACL)
    ├── UnknownTask                 a worker was asked to run a name it has no function for
    ├── FailNow                     raised by a task function: fail the task at once, no retries left or not
    ├── MalformedRecord             a task record that breaks models.RECORD (written by hand)
    │   └── InvalidPayload          its args/kwargs are not JSON
    ├── CorruptQueue                a key or counter of a queue holds what no script writes: refused, nothing written
    ├── PartiallyEnqueued           enqueue_many: some script calls landed, others failed
    ├── NotReplicated               durability="replicated": written on the primary, not confirmed by enough replicas
    ├── Deadline                    a task's own timeout fired (recorded as TaskTimeout)
    ├── ProcessCrashed              the child process running a task (--pool process) died
    ├── RemoteError                 a task raised in a child process; carries its error record
    └── DemoError                   `orch demo`: a process it started failed or never became ready
        ├── OutputClosed            the demo's reader went away (`orch demo | head`)
        └── TransientError          the simulated error of the demo task flaky's first run

See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import re
from typing import Any


def _code_of(class_name: str) -> str:
    """``TaskNotFound`` -> ``TASK_NOT_FOUND``: the default code of an exception class."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", class_name).upper()


class OrchestratorError(Exception):
    """Base class of every orchestrator error.

    ``str(exc)`` is one line for a person; the fields say what it is about as data, so
    the faces (CLI, HTTP API) and callers never parse the text:

    - ``code``: a stable upper-case identifier: the Lua script's error code for errors a
      script returned (``NOT_FOUND``, ``BAD_STATE``, ...), else the class's own (its name
      in upper snake case unless the class sets ``code``);
    - ``task_id``, ``queue``, ``state`` (a ``TaskState`` value), ``field`` (the option or
      argument that was refused): each None when it does not apply or is not known.

    ``to_dict()`` gives all of them as one JSON object. Subclasses keep the message as
    the first positional argument.
    """

    code: str = "ORCHESTRATOR_ERROR"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "code" not in cls.__dict__:
            cls.code = _code_of(cls.__name__)

    def __init__(
        self,
        message: str = "",
        *,
        code: str | None = None,
        task_id: str | None = None,
        queue: str | None = None,
        state: str | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code  # an instance may carry a finer code than its class
        self.task_id = task_id
        self.queue = queue
        self.state = None if state is None else str(getattr(state, "value", state))
        self.field = field

    def fields(self) -> dict[str, str]:
        """The fields that are set (code always), as strings."""
        found = (("task_id", self.task_id), ("queue", self.queue), ("state", self.state), ("field", self.field))
        return {"code": self.code, **{name: value for name, value in found if value is not None}}

    def to_dict(self) -> dict[str, str]:
        """``{"error": class name, "message": ..., "code": ..., and the fields that are set}``."""
        return {"error": type(self).__name__, "message": self.message, **self.fields()}


class ConfigurationError(OrchestratorError):
    """Settings or options that cannot work."""


class ValidationError(OrchestratorError, ValueError):
    """Input rejected before anything was written to Redis."""

    code = "INVALID"


class InvalidQueueName(ValidationError):
    """A queue name that is not 1-64 characters of letters, digits, '_', '-' and '.'."""


class InvalidPriority(ValidationError):
    """A priority outside 0-9."""


class NotSerializable(ValidationError, TypeError):
    """Arguments or a result that are not strict JSON: they would not come back as they went in."""


class PayloadTooLarge(ValidationError):
    """Encoded arguments larger than the configured limit."""

    code = "TOO_LARGE"


class InvalidSchedule(ValidationError):
    """A periodic schedule that cannot be declared (``field`` names the option): nothing written."""


class TaskNotFound(OrchestratorError, LookupError):
    """No task with that id in that queue."""

    code = "NOT_FOUND"


class QueueNotFound(OrchestratorError, LookupError):
    """No queue by that name: nothing was ever enqueued to it (the operator API reads only)."""


class ShardingRefused(OrchestratorError):
    """``declare_queue(queue, shards=K)`` with another K while tasks of the queue wait: nothing
    written. ``shards`` is the K asked, ``current`` the K stored, ``waiting`` the unfinished tasks."""

    def __init__(self, message: str, *, queue: str, shards: int, current: int, waiting: int) -> None:
        super().__init__(message, queue=queue, field="shards")
        self.shards, self.current, self.waiting = shards, current, waiting

    def fields(self) -> dict[str, str]:
        return {**super().fields(), "shards": str(self.shards), "current": str(self.current),
                "waiting": str(self.waiting)}


class ScheduleNotFound(OrchestratorError, LookupError):
    """No periodic schedule with that id (``orch schedules remove``, pause, resume)."""


class InvalidTransition(OrchestratorError):
    """The task's current state does not allow the requested change."""

    code = "BAD_STATE"


class LeaseLost(OrchestratorError):
    """The lease token presented is not the task's current one; nothing was changed."""

    code = "LEASE_LOST"


class TaskFailed(OrchestratorError):
    """The task ended FAILED; ``error`` holds its last error record."""

    def __init__(self, task_id: str, error: dict[str, str] | None, *, queue: str | None = None) -> None:
        self.error = error or {}
        kind = self.error.get("type", "Error")
        message = self.error.get("message", "")
        super().__init__(f"task {task_id} failed: {kind}: {message}", task_id=task_id, queue=queue, state="FAILED")


class TaskCancelled(OrchestratorError):
    """The task was cancelled before it could finish."""


class ResultTimeout(OrchestratorError, TimeoutError):
    """The task did not finish within the time given to ``result()``."""


class UnknownTask(OrchestratorError, LookupError):
    """No function is registered under a task name."""


class FailNow(OrchestratorError):
    """Raised by a task function to fail its task at once: no retry, attempts left or not.

    ``raise FailNow("no such user") from exc`` keeps the cause in the stored traceback.
    """


class OutOfMemory(OrchestratorError):
    """Redis refused the call at maxmemory (``noeviction``); a refused script wrote nothing."""


class RedisUnavailable(OrchestratorError, ConnectionError):
    """Redis could not be reached or the connection broke; ``__cause__`` is redis-py's error."""


class RedisCommandError(OrchestratorError):
    """Redis answered a call with an error that is not bad input (auth, db index, ACL, cluster)."""


class PartiallyEnqueued(OrchestratorError):
    """``enqueue_many``: some of its script calls (up to 1,000 tasks each) failed, others landed.

    ``handles`` are the tasks that were enqueued, in request order; the first failed call's
    error is ``__cause__``. A failed call wrote nothing: each call is one atomic script.
    """

    def __init__(self, message: str, handles: list[Any]) -> None:
        super().__init__(message)
        self.handles = handles


class NotReplicated(OrchestratorError):
    """``durability="replicated"``: the call was written on the primary, but WAIT heard from
    only ``acked`` of the ``wanted`` replicas within the replica timeout, so a failover now
    could lose it. ``reply`` is what the call returned (an enqueue's task, a complete's
    reply). The write stands on the primary: retrying an enqueue with the same ``key`` (or
    ``unique_key``) returns the task, never a second one."""

    def __init__(
        self, message: str, *, acked: int, wanted: int, reply: Any = None,
        task_id: str | None = None, queue: str | None = None,
    ) -> None:
        super().__init__(message, task_id=task_id, queue=queue)
        self.acked = acked
        self.wanted = wanted
        self.reply = reply

    def fields(self) -> dict[str, str]:
        return {**super().fields(), "acked": str(self.acked), "wanted": str(self.wanted)}


class MalformedRecord(OrchestratorError):
    """A task record lacks a required field or holds a value that does not read (models.RECORD).

    Scripts move such a record aside (FAILED with a MalformedRecord error) alone; the
    MALFORMED code says a script did so instead of the transition asked for."""

    code = "MALFORMED"


class InvalidPayload(MalformedRecord):
    """A task record's arguments are not JSON: the worker fails the task instead of running it."""


class CorruptQueue(OrchestratorError):
    """A key or counter of a queue holds a type or value no script writes (written by hand):
    the script refused before writing anything. The message names the key."""

    code = "CORRUPT"



class Deadline(OrchestratorError):
    """The task's own timeout fired (as opposed to a TimeoutError raised by its code)."""


class ProcessCrashed(OrchestratorError):
    """The child process running a task exited before answering."""


class RemoteError(OrchestratorError):
    """A task raised in a child process; ``record`` is the child's error record."""

    def __init__(self, record: dict[str, str]) -> None:
        self.record = record
        super().__init__(f"{record.get('type')}: {record.get('message')}")


class DemoError(OrchestratorError):
    """A process the demo started failed, or never became ready."""


class OutputClosed(DemoError):
    """The reader went away (``orch demo | head``): the demo stops and cleans up."""


class TransientError(DemoError):
    """The simulated error of the demo task ``flaky``'s first run."""

# Stable error codes returned by the Lua scripts (the first word of the error reply).
SCRIPT_ERRORS: dict[str, type[OrchestratorError]] = {
    "NOT_FOUND": TaskNotFound,
    "LEASE_LOST": LeaseLost,
    "BAD_STATE": InvalidTransition,
    "INVALID": ValidationError,
    "TOO_LARGE": PayloadTooLarge,
    "CORRUPT": CorruptQueue,
    "MALFORMED": MalformedRecord,
}


def from_script_error(message: str, *, queue: str | None = None) -> OrchestratorError | None:
    """Map a script's error reply to its exception, or None when it is not one of ours.

    The reply is ``CODE detail``; the detail's words fill the fields the code defines:
    ``NOT_FOUND <id>``, ``LEASE_LOST <id>``, ``MALFORMED <id> <why>``, ``BAD_STATE [<id>] <state>``.
    """
    code, _, detail = message.partition(" ")
    exc_type = SCRIPT_ERRORS.get(code)
    if exc_type is None:
        return None
    words = detail.split()
    task_id = state = None
    if code in ("NOT_FOUND", "LEASE_LOST", "MALFORMED") and words:
        task_id = words[0]
    elif code == "BAD_STATE" and words:
        state = words[-1]
        task_id = words[0] if len(words) > 1 else None
    return exc_type(detail or code, code=code, task_id=task_id, queue=queue, state=state)
