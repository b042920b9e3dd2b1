"""Periodic schedules: their declaration (``ScheduleSpec``) and when their ticks fall. Pure: no I/O.

Owns what a schedule is (its fields, their validation, their form in a Redis hash), the
cron adapter (cronsim, the only module that imports it), the ticks of a schedule
(``next_tick``), which ticks a scheduler pass fires or skips after an outage
(``due_ticks``, the catch-up policies) and the deterministic task id of a tick
(``tick_task_id``). Does not store, fire or enqueue anything (the scheduler and the
schedule scripts do), and never reads the clock: every time is given, as Unix ms.

Ticks
    ``every=N``: the multiples of N seconds since the Unix epoch (``every=60`` fires on each
    minute), so every scheduler computes the same ticks without shared state; elapsed real
    time, whatever the time zone or daylight saving.
    ``cron="m h dom mon dow"`` (five fields, Debian cron semantics) in ``tz``.

Daylight saving (cron in a zone that changes its offset)
    An entry at fixed wall-clock times (its minute and hour fields do not start with ``*``:
    ``30 2 * * *``, ``0 9,17 * * 1-5``) fires once in an hour repeated in autumn (at its first
    occurrence), and a time skipped in spring fires right after the change (02:30 skipped
    fires at 03:00 new time). An interval entry (the minute or hour field starts with ``*``:
    ``*/5 * * * *``, ``0 * * * *``) fires by elapsed real time: every 5 minutes (every hour)
    straight through both changes, twice in the repeated hour's wall-clock times.

Catch-up (ticks that fell while no scheduler ran, see ``due_ticks``)
    ``skip``: fire only the newest tick, and only if it is on time (at most ``ON_TIME_MS``
    late); ``latest`` (the default): fire the newest tick once however late; ``all``: fire
    the newest ``max_catch_up`` ticks, oldest first. The other ticks are skipped.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import collections
import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from cronsim import CronSim, CronSimError
from pydantic import BaseModel, ConfigDict
from pydantic import ValidationError as PydanticError

from .errors import InvalidSchedule, OrchestratorError
from .keys import validate_queue_name
from .models import DEFAULT_PRIORITY, MAX_PRIORITY, MAX_SECONDS, MIN_PRIORITY, dumps, validate_task_name

CatchUp = Literal["skip", "latest", "all"]
Overlap = Literal["allow", "skip"]
CATCH_UP: tuple[CatchUp, ...] = ("skip", "latest", "all")
OVERLAP: tuple[Overlap, ...] = ("allow", "skip")
DEFAULT_TZ = "UTC"
DEFAULT_CATCH_UP: CatchUp = "latest"  # after an outage, one run for the missed ticks
DEFAULT_MAX_CATCH_UP = 10  # catch_up="all": at most this many missed ticks run
MAX_CATCH_UP = 1000
MIN_EVERY = 1.0  # seconds
MAX_ID_LENGTH = 200
ON_TIME_MS = 5_000  # catch_up="skip": a tick found this late (a slow pass, a failover) still fires
MAX_LISTED = 1_000  # Due.skipped lists at most the newest 1,000 skipped ticks (skipped_count has them all)
MAX_SCAN = 200_000  # cron ticks walked per due_ticks call (~1 s); past it the walk jumps ahead
_ID = re.compile(r"[A-Za-z0-9_.:@/-]+")
_JUMP_MS = 86_400_000  # how far before now a walk past MAX_SCAN resumes
UTC = timezone.utc
_PARSE_AT = datetime(2000, 1, 1, tzinfo=UTC)

# The fields of a schedule's Redis hash that hold its declaration (the engine may keep others).
FIELDS = (
    "id",
    "task",
    "queue",
    "cron",
    "every",
    "tz",
    "args",
    "kwargs",
    "priority",
    "catch_up",
    "max_catch_up",
    "overlap",
    "enabled",
)


class ScheduleSpec(BaseModel):
    """One periodic schedule as declared: exactly one of ``cron`` and ``every``.

    Built with keywords (``ScheduleSpec(id=..., task=..., cron=...)``) or ``from_redis``;
    bad input raises ``InvalidSchedule`` (one line, ``field`` names the culprit).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    task: str
    queue: str = "default"
    cron: str | None = None
    every: float | None = None  # seconds, at least MIN_EVERY
    tz: str = DEFAULT_TZ
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    priority: int = DEFAULT_PRIORITY
    catch_up: CatchUp = DEFAULT_CATCH_UP
    max_catch_up: int = DEFAULT_MAX_CATCH_UP
    overlap: Overlap = "allow"
    enabled: bool = True

    def __init__(self, **data: Any) -> None:
        unknown = sorted(set(data) - set(FIELDS))
        if unknown:
            raise InvalidSchedule(
                f"unknown schedule option {unknown[0]!r}; the options are: {', '.join(FIELDS)}", field=unknown[0]
            )
        _check(data)
        try:
            super().__init__(**data)
        except PydanticError as exc:  # not reached for input _check passed; kept as one clear line
            error = exc.errors()[0]
            where = str(error["loc"][0]) if error["loc"] else "schedule"
            raise InvalidSchedule(f"invalid schedule {where}: {error['msg']}", field=where) from None

    @property
    def every_ms(self) -> int | None:
        return None if self.every is None else round(self.every * 1000)

    @property
    def fixed_time(self) -> bool:
        """A cron entry at fixed wall-clock times (minute and hour not starting with ``*``)."""
        return self.cron is not None and _fixed_time(self.cron)

    def to_redis(self) -> dict[str, str]:
        """The declaration as a Redis hash's fields (``FIELDS``): strings, JSON for args/kwargs."""
        return {
            "id": self.id,
            "task": self.task,
            "queue": self.queue,
            "cron": self.cron or "",
            "every": "" if self.every is None else repr(self.every),
            "tz": self.tz,
            "args": orjson.dumps(self.args).decode(),
            "kwargs": orjson.dumps(self.kwargs).decode(),
            "priority": str(self.priority),
            "catch_up": self.catch_up,
            "max_catch_up": str(self.max_catch_up),
            "overlap": self.overlap,
            "enabled": "1" if self.enabled else "0",
        }

    @classmethod
    def from_redis(cls, fields: Mapping[str, str] | Mapping[bytes, bytes]) -> ScheduleSpec:
        """The spec a hash's fields hold (``to_redis``'s form; other fields are ignored)."""
        raw = {_str(k): _str(v) for k, v in fields.items()}
        missing = [name for name in FIELDS if name not in raw]
        if missing:
            raise InvalidSchedule(f"schedule record lacks field {missing[0]!r}", field=missing[0])
        data: dict[str, Any] = {name: raw[name] for name in ("id", "task", "queue", "tz", "catch_up", "overlap")}
        data["cron"] = raw["cron"] or None
        data["every"] = _decode(raw, "every", float) if raw["every"] else None
        data["args"] = _decode(raw, "args", orjson.loads)
        data["kwargs"] = _decode(raw, "kwargs", orjson.loads)
        data["priority"] = _decode(raw, "priority", int)
        data["max_catch_up"] = _decode(raw, "max_catch_up", int)
        if raw["enabled"] not in ("0", "1"):
            raise InvalidSchedule(f"schedule record field 'enabled' is {raw['enabled']!r}, not 0 or 1", field="enabled")
        data["enabled"] = raw["enabled"] == "1"
        return cls(**data)


@dataclass(frozen=True)
class Due:
    """What a scheduler pass does with one schedule (``due_ticks``); ticks in Unix ms, ascending.

    ``fire``: the ticks to fire now; ``skipped``: the newest (at most MAX_LISTED) ticks the
    catch-up policy skips; ``skipped_count``: how many were skipped in all (a lower bound
    after an outage of over MAX_SCAN cron ticks); ``next_ms``: the first tick after now.
    """

    fire: list[int]
    skipped: list[int]
    next_ms: int
    skipped_count: int = -1  # -1: len(skipped)

    def __post_init__(self) -> None:
        if self.skipped_count < 0:
            object.__setattr__(self, "skipped_count", len(self.skipped))


# ------------------------------------------------------------------ validation


def _check(data: Mapping[str, Any]) -> None:
    """Raise InvalidSchedule for the first bad field of a declaration's keywords."""
    sid = data.get("id")
    if not isinstance(sid, str) or not 0 < len(sid) <= MAX_ID_LENGTH or not _ID.fullmatch(sid):
        raise InvalidSchedule(
            f"invalid schedule id {sid!r}: 1 to {MAX_ID_LENGTH} letters, digits, '_', '.', ':', '@', '/' or '-'",
            field="id",
        )
    _refield("task", lambda: validate_task_name(data.get("task")))
    _refield("queue", lambda: validate_queue_name(data.get("queue", "default")))
    tz = data.get("tz", DEFAULT_TZ)
    zone = _zone(tz)
    cron, every = data.get("cron"), data.get("every")
    if (cron is None) == (every is None):
        raise InvalidSchedule("give exactly one of cron= and every=", field="cron" if cron is None else "every")
    if cron is not None:
        _check_cron(cron, zone)
    elif isinstance(every, bool) or not isinstance(every, int | float) or not MIN_EVERY <= every <= MAX_SECONDS:
        raise InvalidSchedule(
            f"every must be a number of seconds from {MIN_EVERY:g} to {MAX_SECONDS:g}, not {every!r}", field="every"
        )
    args, kwargs = data.get("args", []), data.get("kwargs", {})
    if isinstance(args, str | bytes) or not isinstance(args, list | tuple):
        raise InvalidSchedule(f"args must be a list, not {type(args).__name__}", field="args")
    if not isinstance(kwargs, dict):
        raise InvalidSchedule(f"kwargs must be a dict, not {type(kwargs).__name__}", field="kwargs")
    _refield("args", lambda: dumps(list(args), "args"))
    _refield("kwargs", lambda: dumps(kwargs, "kwargs"))
    priority = data.get("priority", DEFAULT_PRIORITY)
    if isinstance(priority, bool) or not isinstance(priority, int) or not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise InvalidSchedule(
            f"priority must be an integer from {MIN_PRIORITY} (runs first) to {MAX_PRIORITY}, not {priority!r}",
            field="priority",
        )
    _one_of("catch_up", data.get("catch_up", DEFAULT_CATCH_UP), CATCH_UP)
    _one_of("overlap", data.get("overlap", "allow"), OVERLAP)
    most = data.get("max_catch_up", DEFAULT_MAX_CATCH_UP)
    if isinstance(most, bool) or not isinstance(most, int) or not 1 <= most <= MAX_CATCH_UP:
        raise InvalidSchedule(
            f"max_catch_up must be an integer from 1 to {MAX_CATCH_UP}, not {most!r}", field="max_catch_up"
        )
    if not isinstance(data.get("enabled", True), bool):
        raise InvalidSchedule(f"enabled must be True or False, not {data['enabled']!r}", field="enabled")


def _refield(field: str, check: Any) -> None:
    """Run another module's check, its error becoming InvalidSchedule on ``field``."""
    try:
        check()
    except OrchestratorError as exc:
        raise InvalidSchedule(exc.message, field=field) from None


def _one_of(field: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InvalidSchedule(f"{field} must be one of {', '.join(map(repr, allowed))}, not {value!r}", field=field)


def _zone(tz: object) -> ZoneInfo:
    if isinstance(tz, str) and tz:
        try:
            return ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    raise InvalidSchedule(f"unknown time zone {tz!r} (an IANA name such as 'Europe/Paris' or 'UTC')", field="tz")


def _check_cron(cron: object, zone: ZoneInfo) -> None:
    if not isinstance(cron, str) or len(cron.split()) != 5:
        raise InvalidSchedule(
            f"cron must be five fields 'minute hour day-of-month month day-of-week', not {cron!r}", field="cron"
        )
    try:
        next(CronSim(cron, _PARSE_AT.astimezone(zone)))
    except (CronSimError, StopIteration, ValueError, IndexError) as exc:
        why = str(exc) or "it never fires"
        raise InvalidSchedule(f"invalid cron {cron!r}: {why}", field="cron") from None


def _str(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _decode(raw: Mapping[str, str], field: str, parse: Any) -> Any:
    try:
        return parse(raw[field])
    except ValueError:  # orjson.JSONDecodeError is a ValueError
        raise InvalidSchedule(f"schedule record field {field!r} does not read: {raw[field]!r}", field=field) from None


# ------------------------------------------------------------------ the cron adapter


def _fixed_time(cron: str) -> bool:
    minute, hour = cron.split()[:2]
    return not minute.startswith("*") and not hour.startswith("*")


def _cron_ticks(cron: str, tz: str, after_ms: int) -> Iterator[int]:
    """The cron entry's ticks strictly after ``after_ms``, ascending, each once (Unix ms).

    cronsim walks fixed wall-clock entries on the naive wall clock (a repeated time gives
    its first occurrence, a skipped one the first real minute after it) and interval
    entries in real time; a walk that starts inside a repeated hour may yield a first
    occurrence already past, so ticks not after the last one given are dropped.
    """
    start = datetime.fromtimestamp(after_ms // 1000, UTC).astimezone(ZoneInfo(tz))
    last = after_ms
    for when in CronSim(cron, start):
        ms = int(when.timestamp()) * 1000
        if ms > last:
            last = ms
            yield ms


# ------------------------------------------------------------------ ticks


def next_tick(spec: ScheduleSpec, after_ms: int) -> int:
    """The schedule's first tick strictly after ``after_ms`` (Unix ms)."""
    every = spec.every_ms
    if every is not None:
        return (after_ms // every + 1) * every
    assert spec.cron is not None
    return next(_cron_ticks(spec.cron, spec.tz, after_ms))


def _newest_ticks(spec: ScheduleSpec, last_ms: int, now_ms: int, keep: int) -> tuple[list[int], int]:
    """The newest ``keep`` ticks in (last_ms, now_ms], ascending, and how many there are in all."""
    every = spec.every_ms
    if every is not None:
        first, newest = (last_ms // every + 1) * every, now_ms // every * every
        if first > newest:
            return [], 0
        count = (newest - first) // every + 1
        return [newest - i * every for i in range(min(keep, count) - 1, -1, -1)], count
    assert spec.cron is not None
    newest_ticks: collections.deque[int] = collections.deque(maxlen=keep)
    count, start = 0, last_ms
    while True:
        for walked, tick in enumerate(_cron_ticks(spec.cron, spec.tz, start), 1):
            if tick > now_ms:
                return list(newest_ticks), count
            newest_ticks.append(tick)
            count += 1
            if walked >= MAX_SCAN:
                break
        start = max(newest_ticks[-1], now_ms - _JUMP_MS)  # the ticks jumped over go uncounted


def due_ticks(spec: ScheduleSpec, last_tick_ms: int | None, now_ms: int, *, on_time_ms: int = ON_TIME_MS) -> Due:
    """Which ticks a scheduler pass at ``now_ms`` fires, given the last tick fired (or baseline).

    The ticks considered are those in (last_tick_ms, now_ms]; the catch-up policy picks
    (module docstring): ``skip`` the newest if at most ``on_time_ms`` late, ``latest`` the
    newest, ``all`` the newest ``max_catch_up``; the rest are ``skipped``.

    ``last_tick_ms`` None is a schedule never fired: nothing counts as missed, and only a
    tick falling exactly at ``now_ms`` fires. The engine should store the time a schedule
    was first declared as its last tick, so that its first run is its first tick after that
    and a pass that comes a little late still fires it.
    """
    if last_tick_ms is None:
        fire = [now_ms] if next_tick(spec, now_ms - 1) == now_ms else []
        return Due(fire, [], next_tick(spec, now_ms))
    next_ms = next_tick(spec, max(last_tick_ms, now_ms))
    if last_tick_ms >= now_ms:
        return Due([], [], next_ms)
    keep = (spec.max_catch_up if spec.catch_up == "all" else 1) + MAX_LISTED
    ticks, count = _newest_ticks(spec, last_tick_ms, now_ms, keep)
    if not ticks:
        return Due([], [], next_ms)
    if spec.catch_up == "all":
        n = min(spec.max_catch_up, len(ticks))
    elif spec.catch_up == "latest":
        n = 1
    else:
        n = 1 if now_ms - ticks[-1] <= on_time_ms else 0
    split = len(ticks) - n
    return Due(ticks[split:], ticks[max(0, split - MAX_LISTED) : split], next_ms, count - n)


def tick_task_id(schedule_id: str, tick_ms: int) -> str:
    """The task id of a schedule's tick: the same for every scheduler, distinct per (schedule, tick).

    ``s-`` and 32 hex digits of a hash of the pair: as long as a random task id, and free of
    the schedule id's characters (an id may hold ':' or '/').
    """
    digest = hashlib.blake2b(f"{schedule_id}\x00{tick_ms}".encode(), digest_size=16).hexdigest()
    return f"s-{digest}"
