"""What the command line shows: queue status, task records and events, as data and text.

Owns reading the state of queues (counts, workers, stats, events) in a few round trips
and turning it into plain dicts and lines of text. Does not print, parse options or
change anything in Redis: ``cli`` prints what these functions return, and every
change goes through ``transitions``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from redis import Redis

from ..keys import QueueKeys, queues_key
from ..models import Task

# The indexes counted per queue, in lifecycle order (running is never purged).
INDEXES = ("pending", "scheduled", "running", "failed", "done")
# Counters of the stats hash worth showing (seq and tokens are internal sequences).
STAT_FIELDS = (
    "enqueued", "started", "succeeded", "failed", "retried", "reaped", "released",
    "cancelled", "promoted", "requeued", "purged", "runs", "runtime_ms",
)
TIMESTAMP_FIELDS = ("created_at", "run_at", "started_at", "completed_at")
WORKER_FIELDS = ("host", "pid", "concurrency", "running", "load", "version", "started_at", "last_seen")
STATUS_LEGEND = (
    "totals count since the queue was first used; succeeded + failed are finished attempts. "
    "avg run time = runtime_ms / runs, over every finished attempt "
    "(throughput over a recent window is not stored)."
)

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def iso(ms: int | str | None) -> str | None:
    """Integer milliseconds since the epoch as ISO 8601 UTC (``...T12:00:00.000Z``)."""
    if ms is None or ms == "":
        return None
    moment = _EPOCH + timedelta(milliseconds=int(ms))
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ------------------------------------------------------------------------------ status


@dataclass(frozen=True)
class WorkerStatus:
    """One worker registered on a queue, from its hash and its heartbeat deadline."""

    id: str
    deadline_ms: int
    alive: bool
    info: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "alive": self.alive,
            "heartbeat_deadline": iso(self.deadline_ms),
            **{name: self.info.get(name) for name in WORKER_FIELDS},
        }


@dataclass(frozen=True)
class QueueStatus:
    queue: str
    now_ms: int
    counts: dict[str, int]
    stats: dict[str, int]
    workers: list[WorkerStatus] = field(default_factory=list)

    @property
    def avg_runtime_ms(self) -> float | None:
        runs = self.stats.get("runs", 0)
        return self.stats.get("runtime_ms", 0) / runs if runs else None

    def to_json(self) -> dict[str, Any]:
        return {
            "counts": self.counts,
            "totals": self.stats,
            "avg_runtime_ms": self.avg_runtime_ms,
            "workers": [w.to_json() for w in self.workers],
        }


def known_queues(client: Redis, prefix: str) -> list[str]:
    """Names in the ``<prefix>:queues`` set, sorted."""
    return sorted(_text(name) for name in client.smembers(queues_key(prefix)))


def queue_status(client: Redis, keys: QueueKeys) -> QueueStatus:
    """Counts, totals and workers of one queue, read in two round trips."""
    pipe = client.pipeline(transaction=False)
    for index in INDEXES:
        pipe.zcard(getattr(keys, index))
    pipe.hgetall(keys.stats)
    pipe.zrange(keys.workers, 0, -1, withscores=True)
    pipe.time()
    *cards, stats, workers, (seconds, micros) = pipe.execute()
    worker_ids = [_text(wid) for wid, _ in workers]
    pipe = client.pipeline(transaction=False)
    for wid in worker_ids:
        pipe.hgetall(keys.worker(wid))
    infos = pipe.execute() if worker_ids else []
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    return decode_status(keys.queue, now_ms, cards, stats, workers, infos)


def decode_status(
    queue: str,
    now_ms: int,
    cards: Sequence[int],
    stats: Mapping[bytes | str, bytes | str],
    workers: Sequence[tuple[bytes | str, float]],
    infos: Sequence[Mapping[bytes | str, bytes | str]],
) -> QueueStatus:
    """Build a QueueStatus from the raw replies of ``queue_status`` (pure)."""
    raw = {_text(k): _text(v) for k, v in stats.items()}
    totals = {name: int(raw.get(name, 0) or 0) for name in STAT_FIELDS}
    found = [
        WorkerStatus(
            id=_text(wid),
            deadline_ms=int(score),
            alive=int(score) >= now_ms,
            info={_text(k): _text(v) for k, v in info.items()},
        )
        for (wid, score), info in zip(workers, infos, strict=True)
    ]
    return QueueStatus(queue, now_ms, dict(zip(INDEXES, map(int, cards), strict=True)), totals, found)


def status_lines(statuses: Sequence[QueueStatus]) -> list[str]:
    """The text of ``orch status``."""
    if not statuses:
        return ["no queues yet: enqueue a task first"]
    lines: list[str] = []
    for s in statuses:
        counts = ", ".join(f"{s.counts[name]} {name}" for name in INDEXES)
        lines.append(f"queue {s.queue}: {counts}")
        totals = ", ".join(f"{name} {s.stats[name]}" for name in STAT_FIELDS if name not in ("runs", "runtime_ms"))
        lines.append(f"  totals: {totals}")
        avg = s.avg_runtime_ms
        lines.append(f"  avg run time: {avg:.1f} ms over {s.stats['runs']} runs" if avg is not None else
                     "  avg run time: - (no runs yet)")
        alive = sum(w.alive for w in s.workers)
        late = len(s.workers) - alive
        lines.append(f"  workers: {alive} live" + (f", {late} unresponsive" if late else ""))
        lines.extend(f"    {worker_line(w, s.now_ms)}" for w in s.workers)
    lines.append(STATUS_LEGEND)
    return lines


def worker_line(w: WorkerStatus, now_ms: int) -> str:
    info = w.info
    parts = [w.id, "" if w.alive else "UNRESPONSIVE"]
    parts.append(f"load {info.get('load', '-')}")
    parts.append(f"running {info.get('running', '-')}/{info.get('concurrency', '-')}")
    parts.append(f"host {info.get('host', '-')} pid {info.get('pid', '-')} version {info.get('version', '-')}")
    if info.get("last_seen"):
        parts.append(f"last seen {(now_ms - int(info['last_seen'])) / 1000:.1f} s ago")
    return "  ".join(p for p in parts if p)


# ------------------------------------------------------------------------------- tasks


def task_record(task: Task) -> dict[str, Any]:
    """The whole task record as JSON-ready data, timestamps as ISO 8601 UTC."""
    record = task.model_dump(mode="json")
    for name in TIMESTAMP_FIELDS:
        record[name] = iso(record.get(name))
    return record


def task_lines(record: Mapping[str, Any]) -> list[str]:
    """The text of ``orch inspect``: one ``field  value`` line each, the traceback last."""
    lines = []
    error = record.get("error")
    width = max(map(len, record), default=0) + 2
    for name, value in record.items():
        if name == "error":
            continue
        if value is None or value == "":
            shown = "-"
        elif name in ("args", "kwargs", "result"):
            shown = json.dumps(value)
        else:
            shown = str(value)
        lines.append(f"{name:<{width}}{shown}")
    if error:
        lines.append(f"{'error':<{width}}{error.get('type', 'Error')}: {error.get('message', '')}")
        lines.extend(f"  {line}" for line in str(error.get("traceback", "")).splitlines())
    return lines


# ------------------------------------------------------------------------------ events


@dataclass(frozen=True)
class Event:
    """One entry of a queue's event stream."""

    id: str
    fields: dict[str, str]

    @property
    def ms(self) -> int:
        return int(self.id.partition("-")[0])

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "time": iso(self.ms), **self.fields}


def _events(entries: Iterable[Any]) -> list[Event]:
    """Decode XRANGE / XREAD entries: (id, {field: value})."""
    return [Event(_text(eid), {_text(k): _text(v) for k, v in (fields or {}).items()}) for eid, fields in entries]


def recent_events(client: Redis, keys: QueueKeys, count: int) -> list[Event]:
    """The last ``count`` events of a queue, oldest first."""
    if count <= 0:
        return []
    return _events(reversed(client.xrevrange(keys.events, count=count) or []))


def last_event_id(client: Redis, keys: QueueKeys) -> str:
    """Id of the newest event, or ``0-0`` when the stream is empty (read after it)."""
    newest = _events(client.xrevrange(keys.events, count=1) or [])
    return newest[0].id if newest else "0-0"


def next_events(client: Redis, keys: QueueKeys, after: str, block_ms: int) -> list[Event]:
    """Events newer than ``after``, waiting up to ``block_ms`` for the first one."""
    reply: Any = client.xread({keys.events: after}, block=block_ms)
    return [event for _, entries in reply or () for event in _events(entries)]


def event_line(event: Event) -> str:
    """``time event task key=value ...``, one line whatever the fields hold."""
    fields = dict(event.fields)
    kind = fields.pop("event", "?")
    task = fields.pop("task", "-")
    parts = [iso(event.ms) or "", kind, task]
    for name, value in fields.items():
        if value == "":
            continue
        if name == "error":
            value = _error_summary(value)
        elif name in ("run_at", "last_seen"):
            value = iso(value) or value
        parts.append(f"{name}={_quote(value)}")
    return " ".join(parts)


def _error_summary(value: str) -> str:
    try:
        err = json.loads(value)
    except ValueError:
        return value
    if not isinstance(err, dict):
        return value
    return f"{err.get('type', 'Error')}: {err.get('message', '')}"


def _quote(value: str) -> str:
    return json.dumps(value) if not value or any(c.isspace() or c == '"' for c in value) else value
