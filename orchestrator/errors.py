"""Every exception orchestrator raises, under one base class.

Owns the exception tree and the table that maps the Lua scripts' stable error codes
to it. Does not raise anything itself.

    OrchestratorError
    ├── ConfigurationError          bad settings, unknown options, unimportable modules
    ├── ValidationError             bad input at enqueue, rejected before anything is written
    │   ├── InvalidQueueName
    │   ├── InvalidPriority
    │   ├── NotSerializable         arguments or a result that are not JSON
    │   └── PayloadTooLarge
    ├── TaskNotFound                no such task (or it expired with its retention)
    ├── InvalidTransition           the task's state does not allow the change asked for
    ├── LeaseLost                   the lease token is stale: the task was reaped or released
    ├── TaskFailed                  raised by TaskHandle.result() for a FAILED task
    ├── TaskCancelled               raised by TaskHandle.result() for a CANCELLED task
    ├── ResultTimeout               TaskHandle.result(timeout=) ran out before the task ended
    ├── OutOfMemory                 Redis reached maxmemory (noeviction): the call wrote nothing
    ├── RedisUnavailable            Redis could not be reached (refused, timeout, closed, DNS)
    ├── RedisCommandError           Redis answered with an error that is not one of ours (auth, db, ACL)
    ├── UnknownTask                 a worker was asked to run a name it has no function for
    └── InvalidPayload              a task record whose args/kwargs are not JSON (written by hand)
"""

from __future__ import annotations

from typing import Any


class OrchestratorError(Exception):
    """Base class of every orchestrator error."""


class ConfigurationError(OrchestratorError):
    """Settings or options that cannot work."""


class ValidationError(OrchestratorError, ValueError):
    """Input rejected before anything was written to Redis."""


class InvalidQueueName(ValidationError):
    """A queue name that is not 1-64 characters of letters, digits, '_', '-' and '.'."""


class InvalidPriority(ValidationError):
    """A priority outside 0-9."""


class NotSerializable(ValidationError, TypeError):
    """Arguments or a result that cannot be encoded as JSON."""


class PayloadTooLarge(ValidationError):
    """Encoded arguments larger than the configured limit."""


class TaskNotFound(OrchestratorError, LookupError):
    """No task with that id in that queue."""


class InvalidTransition(OrchestratorError):
    """The task's current state does not allow the requested change."""


class LeaseLost(OrchestratorError):
    """The lease token presented is not the task's current one; nothing was changed."""


class TaskFailed(OrchestratorError):
    """The task ended FAILED; ``error`` holds its last error record."""

    def __init__(self, task_id: str, error: dict[str, str] | None) -> None:
        self.task_id = task_id
        self.error = error or {}
        kind = self.error.get("type", "Error")
        message = self.error.get("message", "")
        super().__init__(f"task {task_id} failed: {kind}: {message}")


class TaskCancelled(OrchestratorError):
    """The task was cancelled before it could finish."""


class ResultTimeout(OrchestratorError, TimeoutError):
    """The task did not finish within the time given to ``result()``."""


class UnknownTask(OrchestratorError, LookupError):
    """No function is registered under a task name."""


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


class InvalidPayload(OrchestratorError):
    """A task record's arguments are not JSON: the worker fails the task instead of running it."""


# Stable error codes returned by the Lua scripts (the first word of the error reply).
SCRIPT_ERRORS: dict[str, type[OrchestratorError]] = {
    "NOT_FOUND": TaskNotFound,
    "LEASE_LOST": LeaseLost,
    "BAD_STATE": InvalidTransition,
    "INVALID": ValidationError,
    "TOO_LARGE": PayloadTooLarge,
}


def from_script_error(message: str) -> OrchestratorError | None:
    """Map a script's error reply to its exception, or None when it is not one of ours."""
    code, _, detail = message.partition(" ")
    exc_type = SCRIPT_ERRORS.get(code)
    if exc_type is None:
        return None
    return exc_type(detail or code)
