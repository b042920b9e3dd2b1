"""Task, TaskState, RetryPolicy: data and the state table, no I/O.

Owns the lifecycle (which state may follow which), the task record's schema (``RECORD``:
the fields a record must have, how each value must read, the default of an absent one;
the Lua scripts check the same table) and the conversion between a task record in Redis
(a hash of strings) and a typed ``Task``. Does not talk to Redis.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import InvalidPayload, MalformedRecord, NotSerializable, PayloadTooLarge
from .errors import ValidationError as InputError  # pydantic's ValidationError keeps the plain name here
from .reading import MAX_INT
from .reading import text as _text

MIN_PRIORITY = 0
MAX_PRIORITY = 9
DEFAULT_PRIORITY = 5
# A task's defaults (RetryPolicy, TaskOptions) and so its record's (RECORD): enqueue leaves a
# field at its default out of the record, which saves about 60 bytes per queued task.
DEFAULT_MAX_RETRIES = 3
DEFAULT_TIMEOUT_MS = 300_000
DEFAULT_BACKOFF_MS = 1_000
DEFAULT_BACKOFF_MAX_MS = 300_000
MAX_NAME_LENGTH = 256
MAX_SECONDS = 10 * 365 * 86400  # timeouts, delays, backoffs, schedule intervals: ten years (rejects nan and inf)


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


class FailMode(str, enum.Enum):
    """How ``fail`` ends an attempt (the fail script's ``mode``)."""

    RETRY = "retry"  # retry with backoff while attempts remain, else FAILED
    FATAL = "fatal"  # FAILED now, whatever attempts remain (the same code would fail the same way)
    CANCELLED = "cancelled"  # the worker stopped it after a cancel request


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
    TaskState.RETRYING: "retrying",
    TaskState.RUNNING: "running",
    TaskState.FAILED: "failed",
    TaskState.SUCCESS: "done",
    TaskState.CANCELLED: "cancelled",
}
INDEXES = ("pending", "scheduled", "retrying", "running", "failed", "done", "cancelled")
# Indexes trimmed by the retention policy (their entries outlive an expired record a little).
RETAINED = frozenset({"done", "cancelled"})
# The states in the order an operator reads them (counts, listings): lower-case TaskState names.
STATE_NAMES = ("pending", "scheduled", "retrying", "running", "success", "failed", "cancelled")


def can_transition(old: TaskState, new: TaskState) -> bool:
    return new in TRANSITIONS[old]


def validate_task_name(name: object) -> str:
    """A task name: 1-256 printable characters, no whitespace (a name is written into logs)."""
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_LENGTH or not name.isprintable() or " " in name:
        raise InputError(
            f"invalid task name {name!r}: 1 to {MAX_NAME_LENGTH} printable characters "
            "without whitespace (e.g. 'pkg.module:function')",
            field="name",
        )
    return name


# Strict JSON: what comes back from Redis equals what went in. Exact types (a str or int
# subclass, IntEnum or StrEnum included, is refused: it would come back as the base type).
_PLAIN: frozenset[type] = frozenset({str, int, bool, type(None)})
_NUMBERS: frozenset[type] = frozenset({int, float, bool})
_SCALARS: frozenset[type] = _PLAIN | {float}
_STR = frozenset({str})
MAX_DEPTH = 254  # orjson's own limit
JSON_TYPES = "str, int, float (finite), bool, None, list, tuple (comes back as a list), dict with str keys"


def dumps(value: Any, what: str = "value") -> bytes:
    """Encode ``value`` as strict JSON or raise NotSerializable naming what failed and where.

    Accepted: str, int (64-bit), finite float, bool, None, and lists, tuples and dicts with
    str keys of those. Tuples come back as lists (JSON has one array type); anything else
    that would not come back as it went in is refused: datetime, UUID, Decimal, enums,
    dataclasses, sets, bytes, NaN and Infinity, subclasses of str or int, non-str keys.
    """
    kind = type(value)
    if kind is tuple or kind is list:
        flat = _all_fine(value)  # most arguments: one set of types decides
    else:
        flat = kind is dict and _STR.issuperset(map(type, value)) and _all_fine(value.values())
    if not flat:
        found = _first_bad(value, 0)
        if found is not None:
            raise NotSerializable(f"{what}{found[0]} {found[1]}", field=what)
    try:
        return orjson.dumps(value)
    except TypeError as exc:  # an int beyond 64 bits, or a str with lone surrogates: rare, looked for now
        path = _big_int(value)
        if path is not None:
            message = f"{what}{path} is an integer beyond 64 bits: pass it as a str"
        else:
            message = f"{what} is not JSON: {exc}"
        raise NotSerializable(message, field=what) from None


def _all_fine(items: Any) -> bool:
    """Every one of ``items`` (a list, tuple or dict's values) is a scalar strict JSON takes.

    One set of their types decides, C-level: only a mix of floats with str or None needs
    a loop for the floats' values (NaN and Infinity are refused)."""
    types = set(map(type, items))
    if types <= _PLAIN:
        return True
    if types <= _NUMBERS:
        return all(map(math.isfinite, items))
    return types <= _SCALARS and all(math.isfinite(x) for x in items if type(x) is float)


def _big_int(value: Any) -> str | None:
    """The path of the first int orjson cannot encode (outside -2**63 .. 2**64 - 1), else None."""
    if type(value) is int:
        return None if -(2**63) <= value < 2**64 else ""
    items = value.items() if type(value) is dict else enumerate(value) if type(value) in (list, tuple) else ()
    for key, item in items:
        found = _big_int(item)
        if found is not None:
            return f"[{key!r}]{found}"
    return None


def _first_bad(value: Any, depth: int) -> tuple[str, str] | None:
    """(path, problem) of the first part of ``value`` that is not strict JSON, else None.

    Containers of scalars (most arguments) take one set test (``_all_fine``), also inside
    a container without a call; the rest is walked, at most MAX_DEPTH levels deep
    (orjson's own limit). The path is built only on the way out of a failure, so a good
    payload costs no strings."""
    kind = type(value)
    if kind is list or kind is tuple or kind is dict:
        if kind is dict and not _STR.issuperset(map(type, value)):
            bad = next(k for k in value if type(k) is not str)
            return "", f"has a key {bad!r} of type {type(bad).__name__}: JSON keys are str"
        if _all_fine(value.values() if kind is dict else value):
            return None
        if depth >= MAX_DEPTH:
            return "", f"is nested more than {MAX_DEPTH} levels deep (or contains itself)"
        for key, item in value.items() if kind is dict else enumerate(value):
            inner = type(item)
            if inner in _PLAIN or ((inner is list or inner is tuple) and _all_fine(item)):
                continue
            found = _first_bad(item, depth + 1)
            if found is not None:
                return f"[{key!r}]{found[0]}", found[1]  # [2] for a list, ['name'] for a dict
        return None
    if kind is float:
        return None if math.isfinite(value) else ("", f"is {value!r}: JSON has no NaN or Infinity")
    if kind in _PLAIN:
        return None
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    return "", f"is a {name}, not JSON: convert it first (accepted: {JSON_TYPES})"


def loads(data: str | bytes) -> Any:
    return orjson.loads(data)


class RetryPolicy(BaseModel):
    """How often and how soon a failed task is tried again.

    The n-th retry waits ``min(backoff_max, backoff * 2 ** (n - 1))`` seconds, times a
    random factor in [0.5, 1] when ``jitter`` is on (so retries of many tasks spread out).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_retries: int = Field(default=DEFAULT_MAX_RETRIES, ge=0, le=1000, description="Retries after the first attempt.")
    backoff: float = Field(default=DEFAULT_BACKOFF_MS / 1000, ge=0, description="Seconds before the first retry.")
    backoff_max: float = Field(default=DEFAULT_BACKOFF_MAX_MS / 1000, ge=0, description="Longest wait between retries.")
    jitter: bool = Field(default=True, description="Spread retries randomly over [delay/2, delay].")


MAX_PROGRESS_BYTES = 16 * 1024  # largest encoded ``data`` of one progress report (it rides in the event too)


@dataclass(frozen=True)
class Progress:
    """How far a running task got, as it last reported (``current_task().progress``).

    ``fraction`` is 0 to 1; ``data`` the JSON value it came with (None when none);
    ``at_ms`` when it was reported (Redis's clock). Kept through a retry: a new attempt
    overwrites it when it reports (compare ``at_ms`` with the task's ``started_at``)."""

    fraction: float
    data: Any = None
    at_ms: int = 0


def encode_progress(fraction: object, data: Any = None, max_bytes: int = MAX_PROGRESS_BYTES) -> tuple[str, bytes]:
    """A progress report as the progress script takes it: the fraction as a decimal
    string and the data as JSON. Raises ValidationError (field ``fraction``),
    NotSerializable or PayloadTooLarge (field ``data``) before anything is sent."""
    if not (type(fraction) in (int, float) and 0 <= cast(float, fraction) <= 1):  # (not bool; nan fails)
        raise InputError(f"progress fraction {fraction!r} is not a number from 0 to 1", field="fraction")
    encoded = dumps(data, "data")
    if len(encoded) > max_bytes:
        raise PayloadTooLarge(
            f"progress data is {len(encoded)} bytes encoded, more than {max_bytes}", field="data"
        )
    return repr(float(cast(float, fraction))), encoded


def decode_progress(fraction: str, data: bytes | str, at: str) -> Progress | None:
    """A record's progress fields as a Progress, or None: none reported, or spoiled (a
    progress that does not read is only that: the task's state still reads)."""
    try:
        value = orjson.loads(fraction) if fraction else None
        payload = orjson.loads(data) if data else None
    except orjson.JSONDecodeError:
        return None
    if not (type(value) in (int, float) and 0 <= cast(float, value) <= 1):
        return None
    return Progress(float(cast(float, value)), payload, int(at) if at.isdigit() else 0)


class TaskError(BaseModel):
    """What went wrong in an attempt."""

    type: str
    message: str
    traceback: str = ""

# ------------------------------------------------------------------ the task record


class Kind(str, enum.Enum):
    """How a record field's value must read (the same rules in Python and in ``lua/_lib.lua``)."""

    STATE = "state"  # a TaskState value
    NAME = "name"  # non-empty UTF-8 text
    TEXT = "text"  # UTF-8 text, '' allowed
    INT = "int"  # 1 to 16 ASCII digits, at most MAX_INT
    PRIORITY = "priority"  # one digit, 0 to 9
    BOOL = "bool"  # '0' or '1'
    TIME = "time"  # an INT, or '' (not yet, or cleared)
    JSON = "json"  # checked where it is decoded (Task.from_redis, the worker's claim), not in Lua


REQUIRED = None
# The fields of a task record: a record that lacks a REQUIRED field, or holds a value that
# does not read as its Kind, is malformed; an absent optional field takes its default.
# enqueue.lua writes no field at its default (nor attempts, run_at of a PENDING task, which
# is created_at, and ready_at, which reads as the later of created_at and run_at): a queued
# task's record holds name, state, created_at, score and what differs. A task's id and queue
# are not fields: its key says them (``<prefix>:{queue}:task:<id>``) and readers take them from
# there (Task.from_redis's task_id and queue); the id and queue fields of records written before
# are ignored.
# transitions.py renders this table into every Lua script, so it is defined here only.
RECORD: dict[str, tuple[Kind, str | None]] = {
    "state": (Kind.STATE, REQUIRED),
    "name": (Kind.NAME, REQUIRED),
    "priority": (Kind.PRIORITY, str(DEFAULT_PRIORITY)),
    "args": (Kind.JSON, "[]"),
    "kwargs": (Kind.JSON, "{}"),
    "attempts": (Kind.INT, "0"),
    "max_retries": (Kind.INT, str(DEFAULT_MAX_RETRIES)),
    "timeout_ms": (Kind.INT, str(DEFAULT_TIMEOUT_MS)),
    "backoff_ms": (Kind.INT, str(DEFAULT_BACKOFF_MS)),
    "backoff_max_ms": (Kind.INT, str(DEFAULT_BACKOFF_MAX_MS)),
    "jitter": (Kind.BOOL, "1"),
    "key": (Kind.TEXT, ""),  # key=: its entry key:<key> names the task as long as the record exists
    "unique_key": (Kind.TEXT, ""),  # unique_key=: its entry unique:<key> names the task while unfinished
    "created_at": (Kind.TIME, ""),
    "run_at": (Kind.TIME, ""),
    "started_at": (Kind.TIME, ""),
    "completed_at": (Kind.TIME, ""),
    "score": (Kind.TIME, ""),  # the task's place in pending; '' computes it from priority
    "label": (Kind.TEXT, ""),  # its metrics label when not its name (the queue's names were full)
    "worker": (Kind.TEXT, ""),
    "token": (Kind.TIME, ""),
    "cancel_requested": (Kind.BOOL, "0"),
    "result": (Kind.JSON, ""),
    "error": (Kind.JSON, ""),  # blanked by a success, which keeps it as last_error
    "last_error": (Kind.JSON, ""),
    "ready_at": (Kind.TIME, ""),  # when it last became eligible (PENDING, or due when promoted): wait starts here
    "history": (Kind.JSON, ""),  # earlier attempts, a JSON list (records.Attempt; with_attempt in _lib.lua)
    "progress": (Kind.JSON, ""),  # the last progress a RUNNING task reported (progress.lua): a number, 0 to 1
    "progress_data": (Kind.JSON, ""),  # ... the JSON data it came with
    "progress_at": (Kind.TIME, ""),  # ... and when (ms)
    "waiting": (Kind.BOOL, "0"),  # someone waits for its end (watch.lua): its end is published (QueueKeys.finished)
}
PROGRESS_FIELDS = ("progress", "progress_data", "progress_at")
REQUIRED_FIELDS = tuple(name for name, (_, default) in RECORD.items() if default is REQUIRED)

_DIGITS = re.compile(r"[0-9]{1,16}")
_STATES = frozenset(s.value for s in TaskState)


def field_problem(kind: Kind, value: bytes | str) -> str | None:
    """Why ``value`` does not read as ``kind``, or None when it does (JSON: checked where decoded)."""
    if kind is Kind.JSON:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode()
        except UnicodeDecodeError:
            return "is not UTF-8"
    if kind is Kind.STATE:
        return None if value in _STATES else "is not a task state"
    if kind is Kind.NAME:
        return None if value else "is empty"
    if kind is Kind.INT or (kind is Kind.TIME and value):
        return None if _DIGITS.fullmatch(value) and int(value) <= MAX_INT else "is not an integer"
    if kind is Kind.PRIORITY:
        return None if len(value) == 1 and value in "0123456789" else "is not a priority (0-9)"
    if kind is Kind.BOOL:
        return None if value in ("0", "1") else "is not 0 or 1"
    return None


def record_problems(record: Mapping[str, bytes | str]) -> list[str]:
    """What makes a record malformed (empty when it is not), one line per field, by RECORD."""
    problems = [f"field {name} is missing" for name in REQUIRED_FIELDS if name not in record]
    for name, value in record.items():
        kind = RECORD.get(name)
        problem = field_problem(kind[0], value) if kind is not None else None
        if problem is not None:
            problems.append(f"field {name} {_quote(value)} {problem}")
    return problems


def _quote(value: bytes | str) -> str:
    """A stored value as it may be shown in an error: printable ASCII, 40 characters at most."""
    raw = value if isinstance(value, bytes) else value.encode(errors="surrogateescape")
    text = "".join(chr(b) if 32 <= b < 127 and b != 39 else f"\\x{b:02X}" for b in raw[:40])
    return f"'{text}'" + ("..." if len(raw) > 40 else "")



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
    max_retries: int = DEFAULT_MAX_RETRIES
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    backoff_ms: int = DEFAULT_BACKOFF_MS
    backoff_max_ms: int = DEFAULT_BACKOFF_MAX_MS
    jitter: bool = True
    created_at: int | None = None
    run_at: int | None = None
    started_at: int | None = None
    completed_at: int | None = None
    worker: str | None = None
    token: str | None = None
    key: str | None = None
    unique_key: str | None = None
    cancel_requested: bool = False
    result: Any = None
    error: TaskError | None = None
    last_error: TaskError | None = None  # a SUCCESS record keeps its earlier attempt's error here
    ready_at: int | None = None  # when it last became PENDING
    history: list[Any] = Field(default_factory=list)  # its last attempts (records.Attempt's fields), newest last
    progress: Progress | None = None  # the last progress reported (progress, progress_data, progress_at)

    @classmethod
    def from_redis(cls, record: Mapping[bytes | str, bytes | str], task_id: str | None = None,
                   queue: str | None = None) -> Task:
        """Build a Task from the fields of its hash (as HGETALL returns them) and the id and
        queue its key names (``<prefix>:{queue}:task:<id>``): a record does not hold them.
        Without ``task_id`` or ``queue`` the record's own id or queue field is read (records
        written before #18 have them; pass the key's wherever it is known).

        Raises MalformedRecord (InvalidPayload for JSON that does not decode) naming every
        field that breaks ``RECORD``; fields that RECORD does not know are ignored."""
        raw = {_text(k): v for k, v in record.items()}
        ident = {"id": task_id, "queue": queue}
        for name, given in ident.items():
            if given is None and raw.get(name):
                ident[name] = _text(raw[name])
        problems = [f"field {name} is missing" for name, value in ident.items() if not value]
        problems += record_problems(raw)
        task_id = ident["id"] or "?"
        if problems:
            raise MalformedRecord(f"task {task_id} is malformed: {'; '.join(problems)}")
        fields = {k: _text(v) for k, v in raw.items() if k in RECORD}
        data: dict[str, Any] = dict(ident)
        if "progress" in fields:
            data["progress"] = decode_progress(fields["progress"], raw.get("progress_data", b""),
                                               fields.get("progress_at", ""))
        for name, value in fields.items():
            if name in PROGRESS_FIELDS:
                continue
            kind = RECORD[name][0]
            if value == "" and kind in (Kind.TIME, Kind.TEXT, Kind.JSON):
                continue  # scripts blank a field rather than delete it (worker on retry, ...)
            if kind is Kind.JSON:
                try:
                    data[name] = loads(raw[name])  # the bytes: JSON that is not UTF-8 is not JSON
                except orjson.JSONDecodeError:
                    if name == "history":
                        continue  # a spoiled history is only that: the task's state still reads
                    raise InvalidPayload(f"field {name!r} of task {task_id} is not JSON") from None
                if name == "history" and not isinstance(data[name], list):
                    del data[name]
            elif kind is Kind.BOOL:
                data[name] = value == "1"
            else:
                data[name] = value
        if "run_at" not in data and "created_at" in data:  # left out by enqueue: the task was due at once
            data["run_at"] = data["created_at"]
        if "ready_at" not in data and data["state"] == TaskState.PENDING.value and "run_at" in data:
            data["ready_at"] = max(int(data["run_at"]), int(data.get("created_at", 0)))  # as claim.lua reads it
        try:
            return cls.model_validate(data)
        except ValidationError as exc:  # JSON of the wrong shape (args not a list, ...)
            where = ", ".join(str(e["loc"][0]) for e in exc.errors())
            raise MalformedRecord(f"task {task_id} is malformed: field {where} has the wrong shape") from None


