"""Task, TaskState, RetryPolicy: data and the state table, no I/O.

Owns the lifecycle (which state may follow which) and the conversion between a task
record in Redis (a hash of strings) and a typed ``Task``. Does not talk to Redis.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from .errors import InvalidPayload, NotSerializable

MIN_PRIORITY = 0
MAX_PRIORITY = 9
DEFAULT_PRIORITY = 5


class TaskState(str, enum.Enum):
    PENDING = "PENDING"
    SCHEDULED = "SCHEDULED"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    RETRYING = "RETRYING"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset({TaskState.SUCCESS, TaskState.FAILED, TaskState.CANCELLED})

# The lifecycle: every transition a script may make, and nothing else.
# (FAILED is final for a task's run, but `orch retry` may bring it back to PENDING.)
TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    TaskState.SCHEDULED: frozenset({TaskState.PENDING, TaskState.CANCELLED}),
    TaskState.PENDING: frozenset({TaskState.RUNNING, TaskState.CANCELLED}),
    TaskState.RUNNING: frozenset(
        {
            TaskState.SUCCESS,
            TaskState.RETRYING,
            TaskState.FAILED,
            TaskState.PENDING,  # released on graceful shutdown
            TaskState.CANCELLED,  # the worker stopped it after a cancel request
        }
    ),
    TaskState.RETRYING: frozenset({TaskState.PENDING, TaskState.CANCELLED}),
    TaskState.FAILED: frozenset({TaskState.PENDING}),
    TaskState.SUCCESS: frozenset(),
    TaskState.CANCELLED: frozenset(),
}


# The sorted set of a queue (a QueueKeys attribute) that holds a task in each state.
INDEX_OF: dict[TaskState, str] = {
    TaskState.PENDING: "pending",
    TaskState.SCHEDULED: "scheduled",
    TaskState.RETRYING: "scheduled",
    TaskState.RUNNING: "running",
    TaskState.FAILED: "failed",
    TaskState.SUCCESS: "done",
    TaskState.CANCELLED: "done",
}
INDEXES = ("pending", "scheduled", "running", "failed", "done")


def can_transition(old: TaskState, new: TaskState) -> bool:
    return new in TRANSITIONS[old]


def dumps(value: Any) -> bytes:
    """Encode ``value`` as JSON or raise NotSerializable naming what failed."""
    try:
        return orjson.dumps(value)
    except TypeError as exc:
        raise NotSerializable(f"not JSON-serializable: {exc}") from None


def loads(data: str | bytes) -> Any:
    return orjson.loads(data)


class RetryPolicy(BaseModel):
    """How often and how soon a failed task is tried again.

    The n-th retry waits ``min(backoff_max, backoff * 2 ** (n - 1))`` seconds, times a
    random factor in [0.5, 1] when ``jitter`` is on (so retries of many tasks spread out).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_retries: int = Field(default=3, ge=0, le=1000, description="Retries after the first attempt.")
    backoff: float = Field(default=1.0, ge=0, description="Seconds before the first retry.")
    backoff_max: float = Field(default=300.0, ge=0, description="Longest wait between attempts.")
    jitter: bool = Field(default=True, description="Spread retries randomly over [delay/2, delay].")


class TaskError(BaseModel):
    """What went wrong in an attempt."""

    type: str
    message: str
    traceback: str = ""


class Task(BaseModel):
    """A task record as stored in ``<prefix>:{queue}:task:<id>``."""

    model_config = ConfigDict(extra="ignore")

    id: str
    name: str
    queue: str
    state: TaskState
    priority: int = DEFAULT_PRIORITY
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    attempts: int = 0
    max_retries: int = 0
    timeout_ms: int = 0
    backoff_ms: int = 0
    backoff_max_ms: int = 0
    jitter: bool = True
    created_at: int | None = None
    run_at: int | None = None
    started_at: int | None = None
    completed_at: int | None = None
    worker: str | None = None
    token: str | None = None
    key: str | None = None
    cancel_requested: bool = False
    result: Any = None
    error: TaskError | None = None

    @classmethod
    def from_redis(cls, record: Mapping[bytes | str, bytes | str]) -> Task:
        """Build a Task from the fields of its hash (as HGETALL returns them)."""
        fields = {_text(k): _text(v) for k, v in record.items()}
        data: dict[str, Any] = dict(fields)
        for name in ("args", "kwargs", "result", "error"):
            if fields.get(name):
                try:
                    data[name] = loads(fields[name])
                except orjson.JSONDecodeError:
                    raise InvalidPayload(f"field {name!r} of task {fields.get('id')} is not JSON") from None
            else:
                data.pop(name, None)
        # Scripts blank a field rather than delete it (worker on retry, completed_at on retry_failed).
        for name in ("worker", "token", "key", "created_at", "run_at", "started_at", "completed_at"):
            if not fields.get(name):
                data.pop(name, None)
        data["jitter"] = fields.get("jitter", "1") == "1"
        data["cancel_requested"] = fields.get("cancel_requested", "0") == "1"
        return cls.model_validate(data)


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value
