"""Firing periodic schedules: what a scheduler pass does with each queue's due schedules.

Owns ``fire_due``: read the queue's schedules whose next fire time has come (one bounded
ZRANGE on Redis's clock), their records (one round trip), decide with
``schedules.due_ticks`` which ticks fire and which the catch-up policy skips, and send
one schedule_fire.lua call each (together, one round trip). Each call compare-and-sets the
schedule's last tick, so any number of schedulers fire each tick once; a call that lost
the race ('stale') is simply done. A schedule whose record does not read (spoiled by hand:
bad JSON, a missing field, a key of another type, a counter that is not an integer) fails
alone: it is set aside (schedule_set_aside.lua: its index score pushed ``SET_ASIDE_MS``
ahead, an event and the report saying why; its record untouched) and the pass reads the
next ones, so broken schedules cannot fill the batch and starve healthy ones. Does not
declare schedules (``schedule_ops``) nor loop or log (``scheduler``).
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .complaints import describe, server_wide
from .encoding import new_request
from .errors import CorruptQueue, InvalidSchedule
from .reading import aredis_time_ms, text, to_int
from .schedules import ScheduleSpec, due_ticks, tick_task_id
from .script_calls import Call, arun_many
from .transitions import FireReply

if TYPE_CHECKING:
    from .client import Orchestrator

DISABLED_RECHECK_MS = 60_000  # a schedule declared enabled=False is looked at again after this
SET_ASIDE_MS = 60_000  # a schedule whose record does not read is looked at again after this
MAX_ROUNDS = 10  # batches read per pass while broken schedules fill them
COUNTERS = ("fired", "caught_up", "skipped")  # the record's tick counts (bumped by schedule_fire.lua)


@dataclass
class FireReport:
    """What one pass did with one queue's schedules."""

    created: int = 0  # tasks created
    stale: int = 0  # calls that found another scheduler had fired first
    fired: list[tuple[str, int]] = field(default_factory=list)  # (schedule, tick) sent to fire
    errors: list[str] = field(default_factory=list)  # schedules that could not be fired, and why
    set_aside: list[tuple[str, str]] = field(default_factory=list)  # (schedule, why): records that do not read


async def fire_due(app: Orchestrator, queue: str, batch: int) -> FireReport:
    """Fire the due schedules of ``queue`` (at most ``batch`` per round; another round, up to
    ``MAX_ROUNDS``, while a full batch held schedules that had to be set aside)."""
    report = FireReport()
    for _ in range(MAX_ROUNDS):
        read, broken = await _fire_round(app, queue, batch, report)
        if read < batch or not broken:
            break
    return report


async def _fire_round(app: Orchestrator, queue: str, batch: int, report: FireReport) -> tuple[int, int]:
    """One batch: (schedules read, schedules set aside)."""
    scripts = app._scripts(queue)
    redis = app.aredis
    now = await aredis_time_ms(redis) + app._clock_offset_ms
    ids = [text(i) for i in await redis.zrange(scripts.keys.schedules, "-inf", now, byscore=True, offset=0, num=batch)]
    if not ids:
        return 0, 0
    pipe = redis.pipeline(transaction=False)
    for sid in ids:
        pipe.hgetall(scripts.keys.schedule(sid))
    records = await pipe.execute(raise_on_error=False)
    calls: list[Call[FireReply]] = []
    fired_ids: list[str] = []
    broken: list[tuple[str, str]] = []
    for sid, raw in zip(ids, records, strict=True):
        if isinstance(raw, BaseException):
            if server_wide(raw):
                raise raw
            broken.append((sid, describe(raw)))  # WRONGTYPE: the record is not a hash
            continue
        fields = {text(k): text(v) for k, v in raw.items()}
        if not fields:
            continue  # removed since the ZRANGE (remove takes both; a stale index entry goes on its own)
        try:
            call = _fire_call(app, queue, sid, fields, now, report)
        except InvalidSchedule as exc:  # the record does not read
            broken.append((sid, exc.message))
            continue
        except Exception as exc:  # a task that does not encode (hand-written args past the payload limit)
            broken.append((sid, describe(exc)))
            continue
        if call is not None:
            calls.append(call)
            fired_ids.append(sid)
    for sid, result in zip(fired_ids, await arun_many(redis, calls) if calls else [], strict=True):
        if isinstance(result, CorruptQueue) and scripts.keys.schedule(sid) in str(result):
            broken.append((sid, str(result)))  # the script found the record itself spoiled
        elif isinstance(result, BaseException):
            report.errors.append(str(result))
        elif result.outcome == "fired":
            report.created += result.created
        elif result.outcome == "stale":
            report.stale += 1
    await _set_aside(app, queue, broken, now, report)
    return len(ids), len(broken)


async def _set_aside(
    app: Orchestrator, queue: str, broken: list[tuple[str, str]], now: int, report: FireReport
) -> None:
    if not broken:
        return
    scripts = app._scripts(queue)
    whys = [why.encode()[:500].decode(errors="ignore") or "does not read" for _, why in broken]
    until = now + SET_ASIDE_MS
    calls = [scripts.schedule_set_aside(sid, until, why) for (sid, _), why in zip(broken, whys, strict=True)]
    for (sid, _), why, result in zip(broken, whys, await arun_many(app.aredis, calls), strict=True):
        if isinstance(result, BaseException):
            report.errors.append(f"schedule {sid}: {why}; setting it aside failed: {result}")
        elif result:
            report.set_aside.append((sid, why))


def _check_engine_fields(fields: Mapping[str, str]) -> None:
    """The engine's own fields of a record, as schedule_fire.lua writes them."""
    for name in ("last_tick", "since"):
        value = fields.get(name, "")
        if value != "" and (to_int(value) is None or int(value) < 0):
            raise InvalidSchedule(f"schedule record field {name!r} is not a time in ms", field=name)
    for name in COUNTERS:
        count = fields.get(name)
        if count is not None and to_int(count) is None:
            raise InvalidSchedule(f"schedule record field {name!r} is not a count", field=name)


def read_record(fields: Mapping[str, str], sid: str, queue: str) -> ScheduleSpec:
    """The spec of schedule ``sid``'s record in ``queue``, its engine fields checked too:
    InvalidSchedule when the record does not read (what the scheduler sets aside)."""
    spec = ScheduleSpec.from_redis(fields)
    _check_engine_fields(fields)
    if spec.id != sid or spec.queue != queue:
        raise InvalidSchedule(f"schedule record names {spec.id!r} in queue {spec.queue!r}", field="id")
    return spec


def record_problem(raw: Mapping[Any, Any], sid: str, queue: str) -> str | None:
    """Why schedule ``sid``'s record (HGETALL's reply) does not read, or None (``orch doctor``)."""
    try:
        read_record({text(k): text(v) for k, v in raw.items()}, sid, queue)
    except InvalidSchedule as exc:
        return exc.message
    return None


def _fire_call(
    app: Orchestrator, queue: str, sid: str, fields: dict[str, str], now: int, report: FireReport
) -> Call[FireReply] | None:
    if fields.get("paused") == "1":
        return None
    spec = read_record(fields, sid, queue)
    last = fields.get("last_tick", "")
    lower = max(int(last or 0), int(fields.get("since") or 0))
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
