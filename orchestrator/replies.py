"""What the Lua scripts answer, typed: the values ``transitions`` decodes replies into.

Owns the reply types (``Enqueued``, ``Lease``, ``HeartbeatReply``, ``FailReply``,
``ReapReply``, ``PromoteReply``, ``RetryPage``), ``TaskSpec`` (what enqueue sends for one task) and the
decoding of values a script read from a record anyone may have written by hand: a claimed
task that does not decode fails alone (``Lease.payload_error``), ids that are not UTF-8
come back escaped. Pure: no I/O. Does not build calls (``transitions``).
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from .models import DEFAULT_PRIORITY, TaskState
from .reading import text


def strict_text(value: bytes | str) -> str:
    """A reply the scripts wrote: not UTF-8 is an error (a claimed task's name fails that task alone)."""
    return text(value, "strict")


class TaskSpec(NamedTuple):
    """Everything enqueue needs to create one task, already validated and encoded.

    A NamedTuple: built once per enqueued task, where a frozen dataclass costs 4x more.
    """

    id: str
    name: str
    priority: int
    args: bytes
    kwargs: bytes
    max_retries: int
    timeout_ms: int
    backoff_ms: int
    backoff_max_ms: int
    jitter: int  # 1 or 0 (a bool is not a Redis argument)
    delay_ms: int
    key: str = ""  # maps to the task as long as its record exists ('' for none)
    unique_key: str = ""  # maps to the task while it is unfinished ('' for none)


class Enqueued(NamedTuple):  # one per enqueued task: a NamedTuple is 4x cheaper than a frozen dataclass
    id: str
    created: bool  # False: an existing task already held the key (or the unfinished one the unique key)


@dataclass(frozen=True)
class Lease:
    """A claimed task: what the worker runs and the token that proves it holds it."""

    queue: str
    task_id: str
    token: str
    name: str
    args: list[Any]
    kwargs: dict[str, Any]
    attempt: int
    max_retries: int
    timeout_ms: int
    priority: int
    payload_error: str = ""  # set when the record's args/kwargs are not JSON: the task is failed, not run


def _payload(args: bytes, kwargs: bytes) -> tuple[list[Any], dict[str, Any], str]:
    """Decode a claimed task's arguments; a record someone wrote by hand may not be JSON."""
    try:
        decoded_args, decoded_kwargs = orjson.loads(args), orjson.loads(kwargs)
    except orjson.JSONDecodeError as exc:
        return [], {}, f"the task record's args/kwargs are not JSON ({exc}); it was not run"
    if not isinstance(decoded_args, list) or not isinstance(decoded_kwargs, dict):
        return [], {}, "the task record's args must be a JSON list and kwargs a JSON object; it was not run"
    return decoded_args, decoded_kwargs, ""


def decode_lease(queue: str, row: Sequence[Any]) -> Lease:
    """Decode one claimed task on its own: a value that does not read (a record written by
    hand that the script let through) fails that task alone, with payload_error saying why."""
    task_id, token = text(row[0]), text(row[1])
    try:
        name = strict_text(row[2])
        attempt, max_retries, timeout_ms, priority = (int(strict_text(v)) for v in row[5:9])
    except (UnicodeDecodeError, ValueError) as exc:
        return Lease(
            queue, task_id, token, text(row[2]), [], {}, 0, 0, 0, DEFAULT_PRIORITY,
            f"the task record is malformed ({exc}); it was not run",
        )
    args, kwargs, payload_error = _payload(row[3], row[4])
    return Lease(queue, task_id, token, name, args, kwargs, attempt, max_retries, timeout_ms, priority, payload_error)


@dataclass(frozen=True)
class HeartbeatReply:
    lost: list[str]  # tasks whose lease this worker no longer holds
    cancel: list[str]  # tasks with a cancel request
    now_ms: int


@dataclass(frozen=True)
class FailReply:
    state: TaskState
    run_at: int | None


@dataclass(frozen=True)
class Reaped:
    task_id: str
    worker: str
    state: TaskState


@dataclass(frozen=True)
class ReapReply:
    tasks: list[Reaped]
    dead_workers: list[tuple[str, int | None]]  # worker id, last heartbeat ms
    more: bool


@dataclass(frozen=True)
class PromoteReply:
    moved: int
    more: bool


@dataclass(frozen=True)
class RollupReply:
    """What one rollup call did: sampled this minute's load, quarters rolled up, more due."""

    sampled: bool
    rolled: int
    more: bool
    now_ms: int


@dataclass(frozen=True)
class RetryPage:
    """One page of retry_failed over the whole failed set."""

    moved: list[str]
    offset: int  # where the next page starts: past the entries skipped (malformed, kept FAILED)
    more: bool  # a full page was read: call again from offset


def strings(reply: Iterable[bytes | str]) -> list[str]:
    """Ids and names read from Redis: bytes that are not UTF-8 come back escaped (``\\xff``), never raise."""
    return [v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else v for v in reply]


def ms_or_none(value: str) -> int | None:
    """A timestamp read from a record: None when absent or not an integer (written by hand)."""
    return int(value) if value.isdigit() else None


class FireReply(NamedTuple):
    """schedule_fire.lua's answer: outcome 'fired' (created: tasks made), 'stale' (another
    scheduler fired first; last_tick: the record's) or 'gone' (removed or paused)."""

    outcome: str
    created: int = 0
    last_tick: str = ""
