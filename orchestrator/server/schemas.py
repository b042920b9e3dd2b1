"""The HTTP API's own bodies and replies: what ``orch serve`` reads and answers besides the
operator API's records.

Owns the pydantic models of request bodies (enqueue, purge, retry-failed) and of the
replies that wrap or summarize the records of ``orchestrator.records`` (a queue list, a
task with its events, the result of an action, an error). The records themselves
(``QueueStats``, ``TaskInfo``, ``TaskPage``, ``WorkerInfo``, ``Event``) are answered as
they are: one shape for the CLI's ``--json`` and the API. Does no I/O.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..metrics_records import RollupPoint, SeriesPoint
from ..records import Event, TaskInfo, WorkerInfo


class Body(BaseModel):
    """A request body: strict types (no "3" for 3), unknown fields refused (a typo is an error)."""

    model_config = ConfigDict(strict=True, extra="forbid")


class Reply(BaseModel):
    model_config = ConfigDict(frozen=True)


# --------------------------------------------------------------------------- errors


class ErrorDetail(Reply):
    """What went wrong, as data: ``code`` is stable, ``message`` one line for a person."""

    code: str = Field(description="Stable upper-case identifier (NOT_FOUND, BAD_STATE, INVALID, ...).")
    message: str
    type: str | None = Field(default=None, description="The Python exception's class name (TaskNotFound, "
                             "InvalidPriority, ...); absent on the auth refusals (401, 403).")
    task_id: str | None = None
    queue: str | None = None
    state: str | None = None
    field: str | None = Field(default=None, description="The input that was refused.")


class ErrorReply(Reply):
    """Every error answer: 401, 403, 404, 405, 409, 422, 503."""

    error: ErrorDetail


# ---------------------------------------------------------------------------- queues


class QueueSummary(Reply):
    """One queue in the list: tasks per state, live workers, paused or not."""

    queue: str
    counts: dict[str, int] = Field(description="Tasks per state now.")
    workers: int = Field(description="Live workers serving the queue.")
    paused: bool
    load: float = Field(default=0.0, description="Running over concurrency of the live workers (0 with none).")


class QueueList(Reply):
    queues: list[QueueSummary]


class WorkerList(Reply):
    workers: list[WorkerInfo]


class ScheduleEntry(Reply):
    """A periodic schedule: its declaration and what the engine keeps (times in Unix ms)."""

    id: str
    task: str
    queue: str
    cron: str | None
    every: float | None
    tz: str
    args: list[Any]
    kwargs: dict[str, Any]
    priority: int
    catch_up: str
    max_catch_up: int
    overlap: str
    enabled: bool
    next_ms: int | None
    last_tick: int | None
    paused: bool
    created_at: int | None
    fired: int
    caught_up: int
    skipped: int


class ScheduleList(Reply):
    schedules: list[ScheduleEntry]


class SchedulePaused(Reply):
    schedule: str
    paused: bool
    changed: bool = Field(description="False when the schedule was already so.")


class TaskDetail(TaskInfo):
    """A task's record and its events still in the queue's capped event stream (oldest first)."""

    events: list[Event]


# --------------------------------------------------------------------------- enqueue


class EnqueueBody(Body):
    """A task to enqueue by name; unset options take the task's defaults (those of its
    registered function when the server was started with ``--app``)."""

    name: str = Field(description="Task name, e.g. 'pkg.module:function'.")
    args: list[Any] = Field(default_factory=list, description="Positional arguments (JSON).")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments (JSON).")
    priority: int | None = Field(default=None, description="0 (runs first) to 9.")
    delay: float | None = Field(default=None, description="Seconds to wait before it may run.")
    key: str | None = Field(default=None, description="Idempotency key: while a task enqueued with it "
                            "exists, that task is returned (created: false).")
    unique_key: str | None = Field(default=None, description="While a task enqueued with this key is "
                                   "unfinished, that task is returned (created: false).")
    max_retries: int | None = None
    timeout: float | None = Field(default=None, description="Seconds an attempt may run.")


class Enqueued(Reply):
    id: str
    queue: str
    created: bool = Field(description="False when a key returned an existing task.")


# --------------------------------------------------------------------------- actions


class TaskAction(Reply):
    """The outcome of retry, cancel, run-now or delete of one task."""

    id: str
    queue: str
    action: str = Field(description="retried, cancelled, cancel_requested (a running task: its worker "
                        "stops it), run_now or deleted.")
    state: str | None = Field(description="The task's state after the action (None once deleted).")


class RetryFailedBody(Body):
    dry_run: bool = Field(default=False, description="Only count the failed tasks.")


class PurgeBody(Body):
    state: str = Field(description="The tasks to delete: pending, scheduled, failed or done.")
    dry_run: bool = Field(default=False, description="Only count them.")


class Counted(Reply):
    """How many tasks a bulk action moved or deleted (or would have, with ``dry_run``)."""

    queue: str
    count: int
    dry_run: bool
    state: str | None = None


class Paused(Reply):
    queue: str
    paused: bool
    changed: bool = Field(description="False when the queue was already so.")


class Series(Reply):
    """A queue's activity per minute, oldest first, the current minute last; zeros where idle."""

    queue: str
    points: list[SeriesPoint]


class Rollups(Reply):
    """A queue's activity per complete quarter hour, oldest first (kept 7 days); zeros where idle."""

    queue: str
    points: list[RollupPoint]


# ---------------------------------------------------------------------------- health


class Health(Reply):
    status: str = Field(description="ok")
