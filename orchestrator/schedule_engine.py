"""Firing periodic schedules: what a scheduler pass does with each queue's due schedules.

Owns ``fire_due``: read the queue's schedules whose next fire time has come (one bounded
ZRANGE on Redis's clock), their records (one round trip), decide with
``schedules.due_ticks`` which ticks fire and which the catch-up policy skips, and send
one schedule_fire.lua call each (together, one round trip). Each call compare-and-sets the
schedule's last tick, so any number of schedulers fire each tick once; a call that lost
the race ('stale') is simply done. Does not declare schedules (``schedule_ops``) nor loop
(``scheduler``).
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .encoding import new_request
from .reading import aredis_time_ms, text
from .schedules import ScheduleSpec, due_ticks, tick_task_id
from .script_calls import Call, arun_many
from .transitions import FireReply

if TYPE_CHECKING:
    from .client import Orchestrator

DISABLED_RECHECK_MS = 60_000  # a schedule declared enabled=False is looked at again after this


@dataclass
class FireReport:
    """What one pass did with one queue's schedules."""

    created: int = 0  # tasks created
    stale: int = 0  # calls that found another scheduler had fired first
    fired: list[tuple[str, int]] = field(default_factory=list)  # (schedule, tick) sent to fire
    errors: list[str] = field(default_factory=list)  # schedules that could not be fired, and why


async def fire_due(app: Orchestrator, queue: str, batch: int) -> FireReport:
    """Fire the due schedules of ``queue`` (at most ``batch`` of them)."""
    report = FireReport()
    scripts = app._scripts(queue)
    redis = app.aredis
    now = await aredis_time_ms(redis) + app._clock_offset_ms
    ids = [text(i) for i in await redis.zrange(scripts.keys.schedules, "-inf", now, byscore=True, offset=0, num=batch)]
    if not ids:
        return report
    pipe = redis.pipeline(transaction=False)
    for sid in ids:
        pipe.hgetall(scripts.keys.schedule(sid))
    records = await pipe.execute()
    calls: list[Call[FireReply]] = []
    for sid, raw in zip(ids, records, strict=True):
        fields = {text(k): text(v) for k, v in raw.items()}
        if not fields:
            continue  # removed since the ZRANGE (remove takes both; a stale index entry goes on its own)
        try:
            call = _fire_call(app, queue, sid, fields, now, report)
        except Exception as exc:  # a record that does not read, a task that does not encode
            report.errors.append(f"schedule {sid}: {exc}")
            continue
        if call is not None:
            calls.append(call)
    for result in await arun_many(redis, calls) if calls else []:
        if isinstance(result, BaseException):
            report.errors.append(str(result))
        elif result.outcome == "fired":
            report.created += result.created
        elif result.outcome == "stale":
            report.stale += 1
    return report


def _fire_call(
    app: Orchestrator, queue: str, sid: str, fields: dict[str, str], now: int, report: FireReport
) -> Call[FireReply] | None:
    if fields.get("paused") == "1":
        return None
    spec = ScheduleSpec.from_redis(fields)
    last = fields.get("last_tick", "")
    lower = max(int(last) if last.isdigit() else 0, int(fields.get("since") or 0))
    _, task = app._spec(new_request(spec.task, spec.args, spec.kwargs, {"queue": queue, "priority": spec.priority}))
    scripts = app._scripts(queue)
    if not spec.enabled:  # declared off: nothing fires, nothing counts; looked at again later
        return scripts.schedule_fire(sid, last, now + DISABLED_RECHECK_MS, task, [])
    due = due_ticks(spec, lower, now)
    report.fired += [(sid, tick) for tick in due.fire]
    return scripts.schedule_fire(
        sid, last, due.next_ms, task,
        [(tick, tick_task_id(sid, tick)) for tick in due.fire], due.skipped,
        overlap_skip=spec.overlap == "skip", previous=fields.get("last_task", ""),
        skipped_count=due.skipped_count,
    )

