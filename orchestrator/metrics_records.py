"""Metrics kept in Redis: their fixed layout (buckets, labels, series) and their decoding (pure).

Owns the numbers the scripts and the readers share (histogram bucket bounds, the cap on
task-name labels, the series fields and their retention, the roll-ups' quarter hour and
retention; ``transitions`` renders them into every script, so they are defined here
only), the field names of the metrics hash ``<prefix>:{Q}:metrics``, and building
``QueueMetrics``, ``SeriesPoint``, ``RollupPoint`` and ``QueueOverview`` from raw replies.
Every value read is untrusted: one that does not parse is left out with a note, never an
exception. Does no I/O (``queues`` reads Redis; ``server/metrics.py`` exposes
them to Prometheus). See ARCHITECTURE.md for the layers and the README for the fields.

Fields of the metrics hash (``<label>`` is a task name, or ``__other__`` once a queue has
MAX_NAMES names; it comes last, so a name may hold ``:``):
``enqueued:<label>``; ``run:<le ms>:<outcome>:<label>`` (attempts a worker timed, complete
or fail, whose run time fell in that bucket and no lower one; ``inf`` past the last bound)
and ``run_ms:<label>`` (their sum); ``<outcome>:<label>`` (attempts nobody timed: reaped,
cancelled while waiting, cancelled at release); outcomes are succeeded, failed, retried,
cancelled, and a label's count of one is both kinds added up; ``wait:<le ms>`` and
``wait_ms`` (time from eligible to claimed, per queue); ``reaped`` (expired leases);
``late`` (outcomes refused with LEASE_LOST).

A series hash ``series:<minute ms>`` holds the stats counters (SERIES_FIELDS) as they stood
when that minute's first counting call came: a minute's figures are the next snapshot (or
the counters now) minus its own; a minute without one had nothing counted. The scheduler's
rollup call takes the snapshot too (when it is the minute's first) and adds ``load`` and
``workers``, its sample of the live workers. A roll-up ``rollup:<quarter ms>`` holds the
differences over its quarter (the first snapshot at or after its end minus the first at or
after its start) and ``load`` (mean), ``load_max``, ``workers`` (most), ``samples``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .reading import ms_to_datetime, text, to_float, to_int
from .records import UtcTime

# Upper bounds (ms) of the run-time buckets, 5 ms to 1 h, and of the wait-time buckets,
# 1 ms to 1 h (waits are often far shorter than runs: their own buckets). One count per
# bucket is stored (not cumulative); readers add them up.
RUN_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 300_000, 900_000,
                  3_600_000)
WAIT_BUCKETS_MS = (1, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 300_000,
                   900_000, 3_600_000)
MAX_NAMES = 100  # task names admitted as labels per queue (orch:{Q}:names); later ones count as OTHER
OTHER = "__other__"
OUTCOMES = ("succeeded", "failed", "retried", "cancelled")
TICK_OUTCOMES = ("fired", "caught_up", "skipped")  # schedule_fire.lua's schedule_ticks:<outcome>:<schedule id>
SERIES_FIELDS = ("enqueued", "succeeded", "failed", "retried", "reaped", "runtime_ms", "runs")
MINUTE_MS = 60_000
SERIES_TTL_MS = 25 * 3_600_000  # each minute's hash expires 25 h after the minute began
MAX_SERIES_MINUTES = 24 * 60  # what a reader may ask for: 24 h are kept in full
QUARTER_MS = 15 * MINUTE_MS  # roll-ups: one hash per complete quarter hour (rollup.lua)
ROLLUP_TTL_MS = 7 * 24 * 3_600_000  # each roll-up expires 7 days after its quarter ended
MAX_ROLLUP_HOURS = 7 * 24  # what a reader may ask for
BACKFILL_QUARTERS = 8  # roll-ups reach back 2 h at most (a first call, or after downtime): a call walks <= 135 minutes


def lua_constants() -> list[str]:
    """These numbers as Lua definitions (rendered ahead of ``lua/_lib.lua`` by transitions.py)."""
    return [
        f"local RUN_BUCKETS = {{{', '.join(map(str, RUN_BUCKETS_MS))}}}",
        f"local WAIT_BUCKETS = {{{', '.join(map(str, WAIT_BUCKETS_MS))}}}",
        f"local MAX_NAMES = {MAX_NAMES}",
        f"local OTHER_LABEL = '{OTHER}'",
        f"local SERIES_TTL_MS = {SERIES_TTL_MS}",
        f"local QUARTER_MS = {QUARTER_MS}",
        f"local ROLLUP_TTL_MS = {ROLLUP_TTL_MS}",
        f"local BACKFILL_QUARTERS = {BACKFILL_QUARTERS}",
    ]


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True)


class Bucket(_Record):
    le: float = Field(description="Upper bound, in seconds.")
    count: int = Field(description="Observations at or below le (cumulative).")


class Histogram(_Record):
    """Observations in the fixed buckets, cumulative as Prometheus reads them (+Inf is ``count``)."""

    buckets: list[Bucket]
    count: int
    sum: float = Field(description="Sum of the observations, in seconds.")


class QueueMetrics(_Record):
    """One queue's counters and histograms since it was first used (read from Redis)."""

    queue: str
    time: UtcTime = Field(description="The server clock when this was read.")
    enqueued: dict[str, int] = Field(description="Tasks enqueued, per task-name label.")
    finished: dict[str, dict[str, int]] = Field(
        description="Attempts ended, per label, per outcome (succeeded, failed, retried, cancelled)."
    )
    run_seconds: dict[str, Histogram] = Field(description="Run time of finished attempts, per label.")
    wait_seconds: Histogram = Field(description="Time from eligible (enqueued, due, retried) to claimed.")
    reaped: int = Field(description="Leases that expired and were taken back by the reaper.")
    late_outcomes_refused: int = Field(description="Outcomes refused because the lease was lost (fencing).")
    oldest_pending_seconds: float | None = Field(
        description="Age of the oldest pending task since it became eligible (among the first of each priority)."
    )
    schedule_ticks: dict[str, dict[str, int]] = Field(
        default_factory=dict,
        description="Periodic schedules' ticks, per schedule id, per outcome (fired, caught_up, skipped).",
    )
    notes: list[str] = Field(default_factory=list)


class _Activity(_Record):
    """The counts a minute or a quarter hour of a queue's activity holds."""

    enqueued: int = 0
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    reaped: int = 0
    runtime_ms: int = 0
    runs: int = 0


class SeriesPoint(_Activity):
    """One minute of a queue's activity (kept 24 h; a minute nothing happened in reads as zeros)."""

    minute: UtcTime
    load: float | None = Field(
        default=None,
        description="Running over concurrency of the live workers, sampled once in the minute by a scheduler "
        "(None: not sampled).",
    )
    workers: int | None = Field(default=None, description="Live workers when the load was sampled.")


class RollupPoint(_Activity):
    """One complete quarter hour of a queue's activity, rolled up by a scheduler from the
    series (kept 7 days; a quarter not rolled up, or idle, reads as zeros)."""

    start: UtcTime
    load: float | None = Field(default=None, description="Mean of the minutes' load samples (None: none).")
    load_max: float | None = Field(default=None, description="Highest load sample of the quarter.")
    workers: int | None = Field(default=None, description="Most live workers at a sample.")
    samples: int = Field(default=0, description="Minutes whose load was sampled.")


class QueueOverview(_Record):
    """One queue at a glance, as ``app.overview()`` reads every queue at once."""

    queue: str
    counts: dict[str, int] = Field(description="Tasks per state (the 7 lower-case state names).")
    paused: bool
    workers: int = Field(description="Live workers (heartbeat deadline not passed).")
    load: float = Field(description="Running over concurrency of the live workers (0 with none).")
    notes: list[str] = Field(default_factory=list)


def _histogram(bounds_ms: Sequence[int], counts: Mapping[str, int], sum_ms: int) -> Histogram:
    """Cumulative buckets over ``bounds_ms`` from per-bucket counts keyed by bound ('inf' past the last).

    A stored bound that is not one of ``bounds_ms`` (written by another version) counts in
    every bucket at or above it."""
    total = sum(counts.values())
    found: list[tuple[float, int]] = []
    for raw, n in counts.items():
        bound = float("inf") if raw == "inf" else float(int(raw))
        found.append((bound, n))
    buckets = [Bucket(le=le / 1000, count=sum(n for b, n in found if b <= le)) for le in bounds_ms]
    return Histogram(buckets=buckets, count=total, sum=sum_ms / 1000)


def _bound(raw: str) -> bool:
    return raw == "inf" or to_int(raw) is not None


def _timed(rest: str) -> tuple[str, str, str] | None:
    """``<le>:<outcome>:<label>`` split, or None when it does not read so."""
    bound, _, tail = rest.partition(":")
    outcome, _, label = tail.partition(":")
    return (bound, outcome, label) if _bound(bound) and outcome in OUTCOMES and label else None


def decode_metrics(
    queue: str,
    now_ms: int,
    raw: Mapping[bytes | str, bytes | str],
    oldest_ready_ms: int | None,
    notes: Sequence[str] = (),
) -> QueueMetrics:
    """A QueueMetrics from HGETALL of the metrics hash; a field that does not parse is left out, noted."""
    enqueued: dict[str, int] = {}
    finished: dict[str, dict[str, int]] = {}
    runs: dict[str, dict[str, int]] = {}
    run_ms: dict[str, int] = {}
    waits: dict[str, int] = {}
    single = {"wait_ms": 0, "reaped": 0, "late": 0}
    ticks: dict[str, dict[str, int]] = {}
    notes = list(notes)
    for key, value in raw.items():
        field, number = text(key), to_int(value)
        if number is None:
            notes.append(f"metrics field {field[:80]!r} holds {text(value)[:40]!r}, not an integer: left out")
            continue
        kind, _, rest = field.partition(":")
        if field in single:
            single[field] = number
        elif kind == "enqueued" and rest:
            enqueued[rest] = number
        elif kind in OUTCOMES and rest:
            outcomes = finished.setdefault(rest, {})
            outcomes[kind] = outcomes.get(kind, 0) + number
        elif kind == "run_ms" and rest:
            run_ms[rest] = number
        elif kind == "run" and (timed := _timed(rest)) is not None:
            bound, outcome, label = timed
            per_bound = runs.setdefault(label, {})
            per_bound[bound] = per_bound.get(bound, 0) + number
            outcomes = finished.setdefault(label, {})
            outcomes[outcome] = outcomes.get(outcome, 0) + number
        elif kind == "wait" and _bound(rest):
            waits[rest] = number
        elif kind == "schedule_ticks" and (tick := rest.partition(":"))[0] in TICK_OUTCOMES and tick[2]:
            ticks.setdefault(tick[2], {})[tick[0]] = number  # (schedule_fire.lua: schedule ids may hold ':')
        else:
            notes.append(f"metrics field {field[:80]!r} is not one orchestrator writes: left out")
    time = ms_to_datetime(now_ms)
    assert time is not None  # the server clock
    oldest = None if oldest_ready_ms is None else max(now_ms - oldest_ready_ms, 0) / 1000
    return QueueMetrics(
        queue=queue,
        time=time,
        enqueued=dict(sorted(enqueued.items())),
        finished=dict(sorted(finished.items())),
        run_seconds={
            label: _histogram(RUN_BUCKETS_MS, runs.get(label, {}), run_ms.get(label, 0))
            for label in sorted(runs.keys() | run_ms.keys())
        },
        wait_seconds=_histogram(WAIT_BUCKETS_MS, waits, single["wait_ms"]),
        reaped=single["reaped"],
        late_outcomes_refused=single["late"],
        oldest_pending_seconds=oldest,
        schedule_ticks=dict(sorted(ticks.items())),
        notes=notes,
    )


def ready_time(created_at: object, run_at: object, ready_at: object) -> int | None:
    """When a pending task became eligible: ``ready_at``, else the later of created_at and run_at."""
    ready = to_int(text(ready_at)) if ready_at not in (None, b"", "") else None
    if ready is not None:
        return ready
    times = [t for v in (created_at, run_at) if v not in (None, b"", "") and (t := to_int(text(v))) is not None]
    return max(times) if times else None


def minutes(now_ms: int, count: int) -> list[int]:
    """The starts (ms) of the last ``count`` minutes, the current one included, oldest first."""
    current = now_ms - now_ms % MINUTE_MS
    return [current - i * MINUTE_MS for i in range(count - 1, -1, -1)]


def _counters(raw: Mapping[bytes | str, bytes | str] | None) -> dict[str, int] | None:
    """SERIES_FIELDS of a snapshot (or of the stats hash); None for no snapshot. Unreadable: 0."""
    if not raw:
        return None
    fields = {text(k): v for k, v in raw.items()}
    return {name: max(to_int(fields.get(name, b"0")) or 0, 0) for name in SERIES_FIELDS}


def decode_series(
    starts: Sequence[int],
    snapshots: Sequence[Mapping[bytes | str, bytes | str] | None],
    totals_now: Mapping[bytes | str, bytes | str],
) -> list[SeriesPoint]:
    """Per-minute points from each minute's snapshot (HGETALL; empty or None: none) and the
    stats counters now: a minute with a snapshot counts up to the next one (or now); one
    without had nothing counted. A counter that went back (reset by hand) gives 0, not less."""
    now = _counters(totals_now) or dict.fromkeys(SERIES_FIELDS, 0)
    parsed = [_counters(s) for s in snapshots]
    points: list[SeriesPoint] = []
    following = now
    values: list[dict[str, int]] = []
    for snap in reversed(parsed):
        if snap is None:
            values.append({})
            continue
        values.append({name: max(following[name] - snap[name], 0) for name in SERIES_FIELDS})
        following = snap
    for start, counts, raw in zip(starts, reversed(values), snapshots, strict=True):
        moment = ms_to_datetime(start)
        assert moment is not None
        sample = {k: v for k, v in _fields(raw).items() if k in ("load", "workers")}
        points.append(SeriesPoint(minute=moment, **counts, **sample))
    return points


def quarters(now_ms: int, count: int) -> list[int]:
    """The starts (ms) of the last ``count`` complete quarter hours, oldest first."""
    current = now_ms - now_ms % QUARTER_MS
    return [current - i * QUARTER_MS for i in range(count, 0, -1)]


def _fields(raw: Mapping[bytes | str, bytes | str] | None) -> dict[str, Any]:
    """The series and roll-up fields of a hash: counts as ints, load ratios as floats,
    workers and samples as ints; a value that does not parse is left out (reads as unset)."""
    values: dict[str, Any] = {}
    for key, value in (raw or {}).items():
        field = text(key)
        if field in SERIES_FIELDS or field in ("workers", "samples"):
            number = to_int(value)
            if number is not None and (number >= 0 or field in SERIES_FIELDS):
                values[field] = number
        elif field in ("load", "load_max"):
            ratio = to_float(value)
            if ratio is not None and ratio >= 0:
                values[field] = ratio
    return values


def decode_rollup(quarter_ms: int, raw: Mapping[bytes | str, bytes | str] | None) -> RollupPoint:
    """One quarter's point from HGETALL of its roll-up (absent: zeros)."""
    moment = ms_to_datetime(quarter_ms)
    assert moment is not None
    return RollupPoint(start=moment, **_fields(raw))
