"""What the dashboard's pages show, shaped from the operator API's records (pure).

Owns the choices a page makes about the data: the charts of the overview (throughput,
failure rate and worker load per minute, summed over the queues) and of a queue's day
(its 15-minute roll-ups), which actions each state of a
task allows, and how times, durations and JSON values are written for a person. Does no
I/O (``pages`` reads through the operator API) and draws nothing itself (``charts``).
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from ...metrics_records import QueueOverview, RollupPoint, SeriesPoint
from ...reading import ms_to_datetime
from .charts import Line, line_chart

# The actions of one task in each state (the data-action hooks; the API routes they call).
TASK_ACTIONS: dict[str, tuple[str, ...]] = {
    "pending": ("cancel", "delete"),
    "scheduled": ("run-now", "cancel", "delete"),
    "retrying": ("run-now", "cancel", "delete"),
    "running": ("cancel",),
    "success": ("delete",),
    "failed": ("retry", "delete"),
    "cancelled": ("delete",),
}
ACTION_LABELS = {
    "retry": "Retry", "cancel": "Cancel", "run-now": "Run now", "delete": "Delete",
    "retry-failed": "Retry all failed", "purge": "Purge", "pause": "Pause", "resume": "Resume",
    "schedule-pause": "Pause", "schedule-resume": "Resume", "schedule-run-now": "Run now",
}
# Actions that ask first (the confirm dialog); the others act at once.
CONFIRMED = frozenset({"cancel", "delete", "retry-failed", "purge"})
PURGE_STATES = ("failed", "done")  # what the queue page offers to purge (done: success and cancelled)


def task_actions(state: str | None) -> tuple[str, ...]:
    return TASK_ACTIONS.get((state or "").lower(), ())


def hhmm(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%H:%M")


def when(moment: datetime | None) -> str:
    """``2026-12-03 09:00:00 UTC``, or an em dash."""
    if moment is None:
        return "\u2014"
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def when_ms(ms: int | None) -> str:
    """``when`` of a time in milliseconds (a task's progress report)."""
    return when(ms_to_datetime(ms))


def short(moment: datetime | None) -> str:
    """``2026-12-03 09:00:00`` (UTC, said once on the page), or an em dash."""
    if moment is None:
        return "\u2014"
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def ago(moment: datetime | None, now: datetime) -> str:
    """``12 s ago``, ``in 3 min`` (relative to the server's clock), or an em dash."""
    if moment is None:
        return "\u2014"
    seconds = (now - moment).total_seconds()
    span, suffix = abs(seconds), " ago" if seconds >= 0 else ""
    prefix = "" if seconds >= 0 else "in "
    for size, unit in ((86_400, "d"), (3_600, "h"), (60, "min")):
        if span >= size:
            return f"{prefix}{span / size:.0f} {unit}{suffix}"
    return f"{prefix}{span:.0f} s{suffix}"


def from_ms(ms: int | None) -> datetime | None:
    """A Unix time in ms (a schedule's next fire time, its last tick) as a datetime."""
    return ms_to_datetime(ms)


def timing(cron: str | None, every: float | None, tz: str) -> str:
    """When a schedule fires, for a person: ``cron 30 2 * * * (Europe/Paris)``, ``every 10 s``."""
    if cron is not None:
        return f"cron {cron}" + ("" if tz == "UTC" else f" ({tz})")
    return f"every {every:g} s"


def duration(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return ""
    ms = (end - start).total_seconds() * 1000
    return f"{ms:.0f} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


def pretty(value: Any) -> str:
    """A JSON value, indented, non-ASCII kept (it is shown in an escaped ``<pre>``)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


def overview_charts(rows: Sequence[SeriesPoint], live_load: float | None) -> dict[str, str]:
    """The overview's three charts of the last hour (the queues' series summed): throughput,
    failure rate, worker load (sampled each minute; the load now when nothing was sampled)."""
    labels = [hhmm(r.minute) for r in rows]
    failure = [r.failed / (r.succeeded + r.failed) if r.succeeded + r.failed else None for r in rows]
    loads: list[float | None] = [r.load for r in rows]
    if all(v is None for v in loads) and live_load is not None and rows:
        loads = [None] * (len(rows) - 1) + [live_load]  # no sampled series yet: the load now
    return {
        "throughput": line_chart(
            [Line("succeeded", [r.succeeded for r in rows]), Line("failed", [r.failed for r in rows]),
             Line("enqueued", [r.enqueued for r in rows])],
            labels, title="Tasks per minute, last hour",
        ),
        "failure_rate": line_chart([Line("failure rate", failure)], labels, title="Failure rate per minute",
                                   unit="%", top=1.0),
        "load": line_chart([Line("average load", loads)], labels, title="Workers' average load", unit="%", top=1.0),
    }


def day_charts(points: Sequence[RollupPoint]) -> dict[str, str]:
    """A queue's last day from its 15-minute roll-ups: tasks per quarter, and the workers'
    load (mean and highest sample) when a scheduler sampled it."""
    if not points:
        return {}
    labels = [hhmm(p.start) for p in points]
    charts = {
        "Tasks per 15 minutes, last 24 hours": line_chart(
            [Line("succeeded", [p.succeeded for p in points]), Line("failed", [p.failed for p in points]),
             Line("enqueued", [p.enqueued for p in points])],
            labels, title="Tasks per 15 minutes, last 24 hours",
        ),
    }
    if any(p.load is not None for p in points):
        charts["Worker load, last 24 hours"] = line_chart(
            [Line("mean load", [p.load for p in points]), Line("highest", [p.load_max for p in points])],
            labels, title="Worker load per 15 minutes, last 24 hours", unit="%", top=1.0,
        )
    return charts


def average_load(queues: Sequence[QueueOverview]) -> float | None:
    """The live workers' load now over every queue (each queue's weighted by its workers), or None without any."""
    workers = sum(q.workers for q in queues)
    return sum(q.load * q.workers for q in queues) / workers if workers else None
