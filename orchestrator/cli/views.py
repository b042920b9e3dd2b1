"""What the command line shows: the operator API's records as lines of text.

Owns formatting queue stats, workers, task records and events for a terminal (JSON
output is the records' own ``model_dump(mode="json")``). Does not read Redis, print,
parse options or change anything: ``cli.commands`` asks the operator API
(``Orchestrator`` / ``Queue``) and prints what these functions return.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from ..models import STATE_NAMES
from ..reading import iso as iso_time
from ..reading import ms_to_datetime
from ..records import STAT_FIELDS, Event, QueueStats, TaskInfo, TaskPage, WorkerInfo
from ..sanitize import escape

STATUS_LEGEND = (
    "totals count since the queue was first used; succeeded + failed are finished attempts. "
    "avg run time = runtime_ms / runs, over every finished attempt "
    "(throughput over a recent window is not stored)."
)


def iso(ms: int | str | None) -> str | None:
    """Integer milliseconds since the epoch as ISO 8601 UTC (``...T12:00:00.000Z``)."""
    return iso_time(ms_to_datetime(ms))


# ------------------------------------------------------------------------------ status


def status_lines(statuses: Sequence[QueueStats]) -> list[str]:
    """The text of ``orch status``."""
    if not statuses:
        return ["no queues yet: enqueue a task first"]
    lines: list[str] = []
    for s in statuses:
        counts = ", ".join(f"{s.counts.get(name, 0)} {name}" for name in STATE_NAMES)
        lines.append(f"queue {s.queue}{' (PAUSED)' if s.paused else ''}: {counts}")
        shown = (name for name in STAT_FIELDS if name not in ("runs", "runtime_ms"))
        lines.append("  totals: " + ", ".join(f"{name} {_num(s.totals.get(name))}" for name in shown))
        avg = s.avg_runtime_ms
        lines.append(f"  avg run time: {avg:.1f} ms over {_num(s.totals.get('runs'))} runs" if avg is not None else
                     "  avg run time: - (no runs yet)")
        late = len(s.workers) - s.live_workers
        lines.append(f"  workers: {s.live_workers} live" + (f", {late} unresponsive" if late else ""))
        lines.extend(f"    {worker_line(w, s.time)}" for w in s.workers)
        lines.extend(f"  note: {escape(note)}" for note in s.notes)
    lines.append(STATUS_LEGEND)
    return lines


def _num(value: Any) -> str:
    return "-" if value is None else str(value)


def worker_line(w: WorkerInfo, now: datetime) -> str:
    parts = [escape(w.id), "" if w.alive else "UNRESPONSIVE"]
    parts.append(f"load {_num(w.load)}")
    parts.append(f"running {_num(w.running)}/{_num(w.concurrency)}")
    parts.append(f"host {escape(_num(w.host))} pid {_num(w.pid)} version {escape(_num(w.version))}")
    if w.last_seen is not None:
        parts.append(f"last seen {(now - w.last_seen).total_seconds():.1f} s ago")
    parts.extend(f"(note: {escape(note)})" for note in w.notes)
    return "  ".join(p for p in parts if p)


# ------------------------------------------------------------------------------- tasks


def page_lines(page: TaskPage) -> list[str]:
    """The text of ``orch tasks``: one line a task, then the next page's cursor."""
    lines = [task_line(task) for task in page.tasks]
    if not lines:
        lines.append(f"no {page.state} tasks in queue {page.queue}" + (" after this cursor" if page.cursor else ""))
    lines.extend(f"note: {escape(note)}" for note in page.notes)
    if page.cursor is not None:
        lines.append(f"next page: --cursor {_quote(page.cursor)}")
    return lines


def task_line(task: TaskInfo) -> str:
    """``id STATE name priority p attempt a/n <when> [worker w] [error ...]``."""
    state = task.state.value if task.state is not None else "?"
    parts = [escape(task.id), state, escape(task.name or "-"), f"priority {_num(task.priority)}"]
    tries = None if task.max_retries is None else task.max_retries + 1
    parts.append(f"attempt {_num(task.attempts)}/{_num(tries)}")
    for label, moment in (("ended", task.completed_at), ("started", task.started_at), ("due", task.run_at),
                          ("created", task.created_at)):
        if moment is not None:
            parts.append(f"{label} {iso_time(moment)}")
            break
    if task.worker:
        parts.append(f"worker {escape(task.worker)}")
    if task.error and task.state is not None and task.state.value == "FAILED":
        message = escape(task.error.get("message", ""))
        parts.append(f"error {escape(task.error.get('type', 'Error'))}: {message[:100]}")
    parts.extend(f"(note: {escape(note)})" for note in task.notes)
    return "  ".join(parts)


def task_record(task: TaskInfo) -> dict[str, Any]:
    """The whole task record as JSON-ready data, timestamps as ISO 8601 UTC."""
    return task.model_dump(mode="json")


def task_lines(record: Mapping[str, Any]) -> list[str]:
    """The text of ``orch inspect``: one ``field  value`` line each, then the attempts
    (oldest first), the traceback last."""
    lines = []
    error = record.get("error")
    width = max(map(len, record), default=0) + 2
    for name, value in record.items():
        if name in ("error", "notes", "history"):
            continue
        if value is None or value == "":
            shown = "-"
        elif name in ("args", "kwargs", "result"):
            shown = json.dumps(value)
        elif name == "progress":
            shown = progress_text(value)
        else:
            shown = str(value)
        lines.append(f"{name:<{width}}{escape(shown)}")
    lines.extend(f"{'note':<{width}}{escape(note)}" for note in record.get("notes") or ())
    history = record.get("history") or []
    lines.append(f"{'history':<{width}}{len(history) or 'no'} attempt(s) kept, oldest first")
    lines.extend(f"  {attempt_line(attempt)}" for attempt in history)
    if error:
        kind, message = escape(str(error.get("type", "Error"))), escape(str(error.get("message", "")))
        lines.append(f"{'error':<{width}}{kind}: {message}")
        lines.extend(f"  {escape(line)}" for line in str(error.get("traceback", "")).splitlines())
    return lines


def progress_text(progress: Mapping[str, Any]) -> str:
    """A task's last progress report: ``42% {"step": 3} at 2026-12-03T09:00:00.000Z``."""
    data = progress.get("data")
    shown = f"{float(progress.get('fraction') or 0):.0%}" + ("" if data is None else f" {json.dumps(data)}")
    return f"{shown} at {iso_time(ms_to_datetime(progress.get('at_ms'))) or '-'}"


def attempt_line(attempt: Mapping[str, Any]) -> str:
    """One attempt of ``orch inspect``: start .. end, outcome, worker, token, error."""
    parts = [f"{attempt.get('started_at') or '-'} .. {attempt.get('ended_at') or '-'}", str(attempt.get("outcome"))]
    parts += [f"worker {attempt.get('worker') or '-'}", f"token {attempt.get('token') or '-'}"]
    if attempt.get("error"):
        parts.append(str(attempt["error"]))
    return escape("  ".join(parts))


# ------------------------------------------------------------------------------ events


def event_line(event: Event) -> str:
    """``time queue event task key=value ...``, one line whatever the fields hold."""
    parts = [iso_time(event.time) or "-", event.queue, _quote(event.event), _quote(event.task_id or "-")]
    for name, value in event.fields.items():
        if value is None or value == "":
            continue
        if name == "error" and isinstance(value, dict):
            value = f"{value.get('type', 'Error')}: {value.get('message', '')}"
        parts.append(f"{name}={_quote(str(value))}")
    parts.extend(f"note={_quote(note)}" for note in event.notes)
    return " ".join(parts)


def _quote(value: str) -> str:
    """A value read from Redis, fit for one line: quoted and escaped if it holds spaces, quotes or controls."""
    plain = value and value.isprintable() and not any(c.isspace() or c == '"' for c in value)
    return value if plain else json.dumps(value)
