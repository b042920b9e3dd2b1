"""What the operator API returns: typed, JSON-ready records, and their decoding (pure).

Owns the shapes an operator sees (queue stats, workers, task records, events, pages of
tasks) and building them from raw Redis replies. Every value read from Redis is
untrusted: one that does not parse becomes None (or is left out of the counters) with a
note in the record's ``notes``, never an exception. Numbers are numbers and times are
UTC datetimes, serialized as ISO 8601 with milliseconds (``...T09:00:00.123Z``); the CLI
and the HTTP API dump these models as they are. Does no I/O (``queues`` reads Redis).
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any

import orjson
import pydantic
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from .errors import InvalidPayload, MalformedRecord, ValidationError
from .models import INDEX_OF, STATE_NAMES, Progress, Task, TaskState, decode_progress
from .reading import iso, ms_to_datetime, text, to_float, to_int

UtcTime = Annotated[datetime, PlainSerializer(iso, return_type=str, when_used="json")]
Raw = Mapping[bytes | str, bytes | str]

# Counters of the stats hash an operator reads (seq and tokens are internal sequences).
STAT_FIELDS = (
    "enqueued", "started", "succeeded", "failed", "retried", "reaped", "released",
    "cancelled", "promoted", "requeued", "purged", "deleted", "runs", "runtime_ms",
)
TIME_FIELDS = ("created_at", "run_at", "started_at", "completed_at", "ready_at")
OUTCOMES = ("succeeded", "failed", "retried", "cancelled", "released")  # how an attempt ended
# Event fields by kind of value; any other field stays text.
EVENT_INTS = frozenset({"priority", "attempt", "runtime_ms", "count"})
EVENT_TIMES = frozenset({"run_at", "last_seen"})


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True)


# ------------------------------------------------------------------------- states


def parse_state(value: TaskState | str) -> tuple[tuple[str, ...], frozenset[TaskState]]:
    """A state to list (a TaskState, its lower-case name, or ``done``) -> (its indexes, the states shown).

    ``done`` is the CLI's alias for success and cancelled: the done index, then cancelled.
    """
    name = value.value if isinstance(value, TaskState) else str(value).strip().upper()
    if name == "DONE":
        return ("done", "cancelled"), frozenset({TaskState.SUCCESS, TaskState.CANCELLED})
    try:
        state = TaskState(name)
    except ValueError:
        names = ", ".join(s.value.lower() for s in TaskState)
        raise ValidationError(f"unknown state {value!r}: use one of {names} or done", field="state") from None
    return (INDEX_OF[state],), frozenset({state})


# ------------------------------------------------------------------------ workers


class WorkerInfo(_Record):
    """One worker as its heartbeat registered it on a queue (or on several, merged)."""

    id: str
    queues: list[str]
    alive: bool = Field(description="Its heartbeat deadline is ahead of the server clock.")
    heartbeat_deadline: UtcTime | None
    host: str | None = None
    pid: int | None = None
    concurrency: int | None = None
    running: int | None = None
    load: float | None = Field(default=None, description="running / concurrency at its last heartbeat.")
    pool: str | None = None
    processed: int | None = None
    version: str | None = None
    started_at: UtcTime | None = None
    last_seen: UtcTime | None = None
    notes: list[str] = Field(default_factory=list)


def decode_worker(queue: str, worker_id: bytes | str, score: Any, info: Raw, now_ms: int) -> WorkerInfo:
    fields = {text(k): text(v) for k, v in info.items()}
    notes: list[str] = []

    def number(name: str, parse: Any) -> Any:
        raw = fields.get(name)
        value = None if raw in (None, "") else parse(raw)
        if raw not in (None, "") and value is None:
            notes.append(f"{name} {raw[:40]!r} is not a number")
        return value

    def moment(name: str) -> datetime | None:
        value = number(name, to_int)
        found = ms_to_datetime(value)
        if value is not None and found is None:
            notes.append(f"{name} {value} is not a time")
        return found

    deadline = to_float(score)  # a +inf or nan score (written by hand) is no deadline
    if deadline is None:
        notes.append(f"heartbeat deadline {score!r} is not a time")
    return WorkerInfo(
        id=text(worker_id),
        queues=[queue],
        alive=deadline is not None and deadline >= now_ms,
        heartbeat_deadline=ms_to_datetime(deadline),
        host=fields.get("host"),
        pid=number("pid", to_int),
        concurrency=number("concurrency", to_int),
        running=number("running", to_int),
        load=number("load", to_float),
        pool=fields.get("pool"),
        processed=number("processed", to_int),
        version=fields.get("version"),
        started_at=moment("started_at"),
        last_seen=moment("last_seen"),
        notes=notes,
    )


def merge_workers(workers: Sequence[WorkerInfo]) -> list[WorkerInfo]:
    """One record per worker id (a worker registers on each queue it serves), sorted by id."""
    merged: dict[str, WorkerInfo] = {}
    for w in workers:
        seen = merged.get(w.id)
        if seen is None:
            merged[w.id] = w
            continue
        newest = w if _later(w, seen) else seen
        merged[w.id] = newest.model_copy(
            update={"queues": sorted({*seen.queues, *w.queues}), "alive": seen.alive or w.alive}
        )
    return [merged[k] for k in sorted(merged)]


def _later(a: WorkerInfo, b: WorkerInfo) -> bool:
    if a.heartbeat_deadline is None:
        return False
    return b.heartbeat_deadline is None or a.heartbeat_deadline > b.heartbeat_deadline


# -------------------------------------------------------------------------- stats


class QueueStats(_Record):
    """One queue now: tasks per state, paused or not, counters since it was first used, its workers."""

    queue: str
    time: UtcTime = Field(description="The server clock when this was read.")
    counts: dict[str, int] = Field(
        description="Tasks per state (pending, scheduled, retrying, running, success, failed, cancelled), "
        "each its index's size; success and cancelled until their retention ends."
    )
    paused: bool = Field(default=False, description="Paused: workers claim nothing from it (orch pause).")
    totals: dict[str, int] = Field(description="Counters since the queue was first used.")
    avg_runtime_ms: float | None = Field(description="runtime_ms / runs over every finished attempt.")
    workers: list[WorkerInfo]
    notes: list[str] = Field(default_factory=list)

    @property
    def live_workers(self) -> int:
        return sum(w.alive for w in self.workers)


def decode_stats(
    queue: str,
    now_ms: int,
    counts: Mapping[str, int],
    stats: Raw,
    workers: Sequence[WorkerInfo],
    notes: Sequence[str] = (),
    *,
    paused: bool = False,
) -> QueueStats:
    """Build a QueueStats from the raw replies (pure); a counter that is not an integer is left out."""
    raw = {text(k): text(v) for k, v in stats.items()}
    totals: dict[str, int] = {}
    notes = list(notes)
    for name in STAT_FIELDS:
        value = to_int(raw.get(name, "0"))
        if value is None:
            notes.append(f"counter {name} holds {raw[name][:40]!r}, not an integer: left out")
            continue
        totals[name] = value
    runs, runtime = totals.get("runs", 0), totals.get("runtime_ms")
    time = ms_to_datetime(now_ms)
    assert time is not None  # the server clock
    return QueueStats(
        queue=queue,
        time=time,
        counts={name: int(counts.get(name, 0)) for name in STATE_NAMES},
        paused=paused,
        totals=totals,
        avg_runtime_ms=runtime / runs if runs and runtime is not None else None,
        workers=list(workers),
        notes=notes,
    )


# -------------------------------------------------------------------------- tasks


class Attempt(_Record):
    """One attempt of a task, from its record's ``history`` (the last 10 are kept)."""

    worker: str | None = None
    token: str | None = Field(default=None, description="The lease token the attempt ran under.")
    started_at: UtcTime | None = None
    ended_at: UtcTime | None = None
    outcome: str = Field(description="succeeded, failed, retried, cancelled or released.")
    error: str = Field(default="", description="One line: the error's type and message; '' on success.")


HISTORY_KEPT = 10


def error_line(error: Any) -> str:
    """An attempt's error as its history shows it (as ``error_line`` in lua/_lib.lua does):
    'Type: first line of the message', at most 200 bytes; '' for none."""
    if not isinstance(error, Mapping) or not error:
        return ""
    kind, message = error.get("type"), error.get("message")
    kind = kind if isinstance(kind, str) else "Error"
    message = message if isinstance(message, str) else ""
    first = message.replace("\r", "\n").split("\n", 1)[0]
    line = f"{kind}: {first}" if first else str(kind)
    return line.encode()[:200].decode(errors="ignore")


def with_last_attempt(
    attempts: list[Attempt], state: Any, fields: Mapping[str, Any]
) -> list[Attempt]:
    """The stored attempts, then the one a SUCCESS or FAILED record tells by its own fields
    (worker, token, started_at, completed_at, error: the scripts store only the attempts
    those fields no longer tell), the last HISTORY_KEPT."""
    started = fields.get("started_at")
    told = state in (TaskState.SUCCESS, TaskState.FAILED) and started is not None
    if told and (not attempts or attempts[-1].started_at != started):
        success = state == TaskState.SUCCESS
        attempts = [*attempts, Attempt(
            worker=fields.get("worker") or None,
            token=fields.get("token") or None,
            started_at=started,
            ended_at=fields.get("completed_at"),
            outcome="succeeded" if success else "failed",
            error="" if success else error_line(fields.get("error")),
        )]
    return attempts[-HISTORY_KEPT:]


def decode_history(raw: Any) -> tuple[list[Attempt], list[str]]:
    """The attempts of a record's decoded ``history`` list; an entry that does not read is noted, left out."""
    if raw is None or raw == "":
        return [], []
    if not isinstance(raw, list):
        return [], ["history is not a list: left out"]
    found, notes = [], []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict) or not isinstance(entry.get("outcome"), str):
            notes.append(f"history entry {i} does not read as an attempt: left out")
            continue
        worker, token = entry.get("worker"), entry.get("token")
        found.append(Attempt(
            worker=worker if isinstance(worker, str) and worker else None,
            token=str(token) if isinstance(token, (str, int)) and not isinstance(token, bool) and token != "" else None,
            started_at=ms_to_datetime(to_int(entry.get("started_at"))),
            ended_at=ms_to_datetime(to_int(entry.get("ended_at"))),
            outcome=entry["outcome"],
            error=entry["error"] if isinstance(entry.get("error"), str) else "",
        ))
    return found, notes


class TaskInfo(_Record):
    """A task's record as an operator sees it: times as datetimes, arguments decoded."""

    id: str
    queue: str
    name: str | None = None
    state: TaskState | None = None
    priority: int | None = None
    args: list[Any] | None = None
    kwargs: dict[str, Any] | None = None
    attempts: int | None = None
    max_retries: int | None = None
    timeout_ms: int | None = None
    backoff_ms: int | None = None
    backoff_max_ms: int | None = None
    jitter: bool | None = None
    created_at: UtcTime | None = None
    run_at: UtcTime | None = None
    started_at: UtcTime | None = None
    completed_at: UtcTime | None = None
    worker: str | None = None
    token: str | None = None
    key: str | None = None
    unique_key: str | None = None
    cancel_requested: bool = False
    result: Any = None
    error: dict[str, Any] | None = None
    last_error: dict[str, Any] | None = None  # a SUCCESS's earlier attempt's error
    ready_at: UtcTime | None = None
    history: list[Attempt] = Field(default_factory=list, description="The last attempts, oldest first.")
    progress: Progress | None = Field(default=None, description="The last progress the task reported.")
    notes: list[str] = Field(default_factory=list)

    @classmethod
    def from_task(cls, task: Task) -> TaskInfo:
        data = task.model_dump()
        for name in TIME_FIELDS:
            data[name] = ms_to_datetime(data[name])
        history, data["notes"] = decode_history(data["history"])
        data["history"] = with_last_attempt(history, task.state, data)
        return cls.model_validate(data)


def decode_task(queue: str, task_id: str, record: Raw) -> TaskInfo:
    """A TaskInfo from HGETALL of the key of ``task_id`` in ``queue`` (a record does not hold
    them: its key does); a malformed record gives what parses, with notes, never an error."""
    try:
        return TaskInfo.from_task(Task.from_redis(record, task_id, queue))
    except (InvalidPayload, MalformedRecord, pydantic.ValidationError) as exc:
        return _lenient_task(queue, task_id, {text(k): text(v) for k, v in record.items()}, exc)


def _lenient_task(queue: str, task_id: str, fields: dict[str, str], exc: Exception) -> TaskInfo:
    notes = [f"malformed record: {str(exc).splitlines()[0][:200]}"]
    data: dict[str, Any] = {"id": task_id, "queue": queue, "name": fields.get("name")}
    state = fields.get("state", "")
    data["state"] = state if state in TaskState.__members__ else None
    for name in ("priority", "attempts", "max_retries", "timeout_ms", "backoff_ms", "backoff_max_ms"):
        data[name] = to_int(fields.get(name))
    for name in TIME_FIELDS:
        data[name] = ms_to_datetime(to_int(fields.get(name)))
    for name in ("worker", "token", "key", "unique_key"):
        data[name] = fields.get(name) or None
    for name, shape in (("args", list), ("kwargs", dict), ("result", object), ("error", dict), ("last_error", dict),
                        ("history", list)):
        if fields.get(name):
            try:
                value = orjson.loads(fields[name])
            except orjson.JSONDecodeError:
                value = None
            data[name] = value if isinstance(value, shape) else None
    history, history_notes = decode_history(data.get("history"))
    data["history"] = with_last_attempt(history, data.get("state"), data)
    if fields.get("progress"):
        data["progress"] = decode_progress(fields["progress"], fields.get("progress_data", ""),
                                           fields.get("progress_at", ""))
    return TaskInfo.model_validate({**data, "notes": notes + history_notes})


class TaskPage(_Record):
    """One page of a queue's tasks in one state; pass ``cursor`` back for the next (None: no more)."""

    queue: str
    state: str
    tasks: list[TaskInfo]
    cursor: str | None
    notes: list[str] = Field(default_factory=list)


def make_cursor(member: str, score: float) -> str:
    return f"{score!r}:{member}"


def read_cursor(cursor: str) -> tuple[str, float]:
    score, sep, member = cursor.partition(":")
    try:
        number: float | None = float(score)  # inf too: a hand-written score
    except ValueError:
        number = None
    if not sep or not member or number is None or number != number:
        raise ValidationError(f"invalid cursor {cursor[:80]!r}: pass back the cursor of a page", field="cursor")
    return member, number


# ------------------------------------------------------------------------- events


class Event(_Record):
    """One entry of a queue's event stream."""

    id: str
    queue: str
    time: UtcTime | None
    event: str
    task_id: str | None = None
    fields: dict[str, Any] = Field(description="The other fields: numbers as numbers, times as times, "
                                   "error as an object.")
    notes: list[str] = Field(default_factory=list)

    def sort_key(self) -> tuple[int, int]:
        ms, _, seq = self.id.partition("-")
        return to_int(ms) or 0, to_int(seq) or 0


def decode_event(queue: str, event_id: bytes | str, raw: Raw | None) -> Event:
    eid = text(event_id)
    fields: dict[str, Any] = {}
    notes: list[str] = []
    for k, v in (raw or {}).items():
        name, value = text(k), text(v)
        if "\ufffd" in value or "\ufffd" in name:
            notes.append(f"field {name!r} is not UTF-8 (shown with replacement characters)")
        fields[name] = _event_value(name, value, notes)
    kind = fields.pop("event", None)
    task = fields.pop("task", None)
    return Event(
        id=eid,
        queue=queue,
        time=ms_to_datetime(to_int(eid.partition("-")[0])),
        event=kind if isinstance(kind, str) else "?",
        task_id=task if isinstance(task, str) else None,
        fields=fields,
        notes=notes,
    )


def _event_value(name: str, value: str, notes: list[str]) -> Any:
    if value == "" or name in ("event", "task"):
        return value or None
    if name in EVENT_INTS:
        number = to_int(value)
        if number is None:
            notes.append(f"{name} {value[:40]!r} is not an integer")
        return number
    if name in EVENT_TIMES:
        moment = ms_to_datetime(to_int(value))
        if moment is None:
            notes.append(f"{name} {value[:40]!r} is not a time")
        return iso(moment)
    if name == "error":
        try:
            error = orjson.loads(value)
        except orjson.JSONDecodeError:
            return {"type": "Error", "message": value}
        return error if isinstance(error, dict) else {"type": "Error", "message": value}
    return value
