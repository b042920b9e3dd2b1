"""orchestrator.schedules: declarations, their Redis form, ticks, catch-up, daylight saving."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator import errors, schedules
from orchestrator.errors import InvalidSchedule
from orchestrator.schedules import Due, ScheduleSpec, due_ticks, next_tick, tick_task_id

SECOND, MINUTE, HOUR, DAY = 1000, 60_000, 3_600_000, 86_400_000


def ms(*when: int) -> int:
    """A UTC wall-clock time as Unix ms: ms(2026, 11, 1, 5, 30)."""
    return int(datetime(*when, tzinfo=timezone.utc).timestamp()) * 1000  # type: ignore[misc]


def spec(**options: Any) -> ScheduleSpec:
    options.setdefault("id", "report")
    options.setdefault("task", "pkg.jobs:report")
    if "cron" not in options and "every" not in options:
        options["cron"] = "*/5 * * * *"
    return ScheduleSpec(**options)


def ticks(s: ScheduleSpec, after: int, count: int) -> list[int]:
    found = []
    for _ in range(count):
        after = next_tick(s, after)
        found.append(after)
    return found


# ------------------------------------------------------------------ validation


def test_defaults_are_the_documented_ones():
    s = spec()
    assert (s.queue, s.tz, s.args, s.kwargs, s.priority) == ("default", "UTC", [], {}, 5)
    assert (s.catch_up, s.max_catch_up, s.overlap, s.enabled) == ("latest", 10, "allow", True)
    assert s.every is None and s.fixed_time is False


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"id": ""}, "id"),
        ({"id": "has space"}, "id"),
        ({"id": "x" * 201}, "id"),
        ({"id": 7}, "id"),
        ({"task": "has space"}, "task"),
        ({"task": ""}, "task"),
        ({"task": None}, "task"),
        ({"queue": "no/slash"}, "queue"),
        ({"queue": ""}, "queue"),
        ({"cron": None}, "cron"),  # neither cron nor every
        ({"cron": "* * * * *", "every": 60}, "every"),  # both
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "* * *"}, "cron"),
        ({"cron": "0 0 * * * *"}, "cron"),  # six fields (seconds) are not cron's
        ({"cron": "0 0 31 2 *"}, "cron"),  # never fires
        ({"cron": "every day"}, "cron"),
        ({"cron": 5}, "cron"),
        ({"tz": "Mars/Olympus_Mons"}, "tz"),
        ({"tz": ""}, "tz"),
        ({"tz": "../../etc/passwd"}, "tz"),
        ({"tz": None}, "tz"),
        ({"cron": None, "every": 0.5}, "every"),
        ({"cron": None, "every": 0}, "every"),
        ({"cron": None, "every": -60}, "every"),
        ({"cron": None, "every": True}, "every"),
        ({"cron": None, "every": "60"}, "every"),
        ({"cron": None, "every": float("nan")}, "every"),
        ({"cron": None, "every": float("inf")}, "every"),
        ({"args": "abc"}, "args"),
        ({"args": [{1, 2}]}, "args"),
        ({"args": [datetime(2026, 1, 1)]}, "args"),
        ({"kwargs": [1]}, "kwargs"),
        ({"kwargs": {1: "a"}}, "kwargs"),
        ({"priority": 10}, "priority"),
        ({"priority": -1}, "priority"),
        ({"priority": True}, "priority"),
        ({"priority": "5"}, "priority"),
        ({"catch_up": "sometimes"}, "catch_up"),
        ({"overlap": "never"}, "overlap"),
        ({"max_catch_up": 0}, "max_catch_up"),
        ({"max_catch_up": 1001}, "max_catch_up"),
        ({"max_catch_up": 2.5}, "max_catch_up"),
        ({"enabled": "yes"}, "enabled"),
        ({"tzinfo": "UTC"}, "tzinfo"),  # a misspelt option
    ],
)
def test_bad_declarations_raise_one_clear_error(options, field):
    with pytest.raises(InvalidSchedule) as caught:
        spec(**options)
    assert caught.value.field == field
    assert caught.value.code == "INVALID_SCHEDULE"
    assert "\n" not in str(caught.value) and str(caught.value)
    assert isinstance(caught.value, errors.ValidationError)  # bad input, nothing written


def test_valid_declarations():
    assert spec(cron="30 2 * * *", tz="Europe/Paris").fixed_time
    assert not spec(cron="0 */2 * * *", tz="Europe/Paris").fixed_time
    assert spec(cron=None, every=1).every_ms == 1000
    assert spec(cron=None, every=2.5).every_ms == 2500
    assert spec(args=(1, "a"), kwargs={"k": [None]}).args == [1, "a"]
    assert spec(task="another.service:job", queue="q.1").queue == "q.1"  # not registered here: fine


def test_a_spec_is_frozen():
    s = spec()
    with pytest.raises(pydantic_errors()):
        s.cron = "* * * * *"  # type: ignore[misc]


def pydantic_errors() -> type[Exception]:
    import pydantic

    return pydantic.ValidationError


# ------------------------------------------------------------------ Redis form


@pytest.mark.parametrize(
    "s",
    [
        spec(),
        spec(cron=None, every=2.5, tz="America/New_York", args=[1, [2.5, None]], kwargs={"a": {"b": True}}),
        spec(priority=0, catch_up="all", max_catch_up=1000, overlap="skip", enabled=False, queue="emails"),
    ],
)
def test_to_redis_and_back(s):
    fields = s.to_redis()
    assert set(fields) == set(schedules.FIELDS)
    assert all(isinstance(v, str) for v in fields.values())
    assert ScheduleSpec.from_redis(fields) == s
    as_bytes = {k.encode(): v.encode() for k, v in fields.items()}
    assert ScheduleSpec.from_redis({**as_bytes, b"last_tick": b"123"}) == s  # the engine's own fields: ignored


def test_from_redis_refuses_a_broken_record():
    fields = spec().to_redis()
    with pytest.raises(InvalidSchedule) as caught:
        ScheduleSpec.from_redis({k: v for k, v in fields.items() if k != "tz"})
    assert caught.value.field == "tz"
    for field, value in [("priority", "x"), ("args", "[1,"), ("enabled", "yes"), ("every", "often"), ("cron", "?")]:
        broken = {**fields, field: value}
        if field == "every":
            broken["cron"] = ""
        with pytest.raises(InvalidSchedule) as caught:
            ScheduleSpec.from_redis(broken)
        assert caught.value.field == field


# ------------------------------------------------------------------ ticks


def test_every_ticks_are_multiples_since_the_epoch():
    s = spec(cron=None, every=60)
    assert next_tick(s, ms(2026, 12, 3, 15, 0, 30)) == ms(2026, 12, 3, 15, 1)
    assert next_tick(s, ms(2026, 12, 3, 15, 1)) == ms(2026, 12, 3, 15, 2)  # strictly after
    assert next_tick(spec(cron=None, every=1.5), 0) == 1500


def test_cron_ticks_in_utc():
    s = spec(cron="*/5 * * * *")
    assert next_tick(s, ms(2026, 12, 3, 15, 0)) == ms(2026, 12, 3, 15, 5)
    assert next_tick(s, ms(2026, 12, 3, 15, 4) + 59_999) == ms(2026, 12, 3, 15, 5)
    assert ticks(spec(cron="0 9 * * 1-5"), ms(2026, 12, 4, 10), 2) == [ms(2026, 12, 7, 9), ms(2026, 12, 8, 9)]


# Daylight saving in 2026. Europe/Paris: 29 March 02:00 CET -> 03:00 CEST (01:00 UTC);
# 25 October 03:00 CEST -> 02:00 CET (01:00 UTC). America/New_York: 8 March 02:00 EST ->
# 03:00 EDT (07:00 UTC); 1 November 02:00 EDT -> 01:00 EST (06:00 UTC).


@pytest.mark.parametrize(
    ("tz", "start", "expected"),
    [
        # celery#10107: an hourly job must run at both 01:00 EDT and 01:00 EST.
        ("America/New_York", ms(2026, 11, 1, 4), [ms(2026, 11, 1, 5), ms(2026, 11, 1, 6), ms(2026, 11, 1, 7)]),
        ("Europe/Paris", ms(2026, 10, 24, 23), [ms(2026, 10, 25, 0), ms(2026, 10, 25, 1), ms(2026, 10, 25, 2)]),
        # and an hour apart in real time through the spring change too
        ("America/New_York", ms(2026, 3, 8, 5), [ms(2026, 3, 8, 6), ms(2026, 3, 8, 7), ms(2026, 3, 8, 8)]),
        ("Europe/Paris", ms(2026, 3, 28, 23), [ms(2026, 3, 29, 0), ms(2026, 3, 29, 1), ms(2026, 3, 29, 2)]),
    ],
)
def test_an_hourly_entry_fires_every_real_hour_through_a_change(tz, start, expected):
    assert ticks(spec(cron="0 * * * *", tz=tz), start, 3) == expected


@pytest.mark.parametrize(
    ("tz", "cron", "start", "expected"),
    [
        # celery#9653: a daily job at 16:04 New York time ran at 17:04 on the day DST started.
        ("America/New_York", "4 16 * * *", ms(2026, 3, 7), [ms(2026, 3, 7, 21, 4), ms(2026, 3, 8, 20, 4)]),
        ("Europe/Paris", "0 9 * * *", ms(2026, 3, 28), [ms(2026, 3, 28, 8), ms(2026, 3, 29, 7)]),
        # and back in autumn
        ("America/New_York", "4 16 * * *", ms(2026, 10, 31), [ms(2026, 10, 31, 20, 4), ms(2026, 11, 1, 21, 4)]),
        ("Europe/Paris", "0 9 * * *", ms(2026, 10, 24), [ms(2026, 10, 24, 7), ms(2026, 10, 25, 8)]),
    ],
)
def test_a_daily_entry_keeps_its_wall_clock_time_across_a_change(tz, cron, start, expected):
    assert ticks(spec(cron=cron, tz=tz), start, 2) == expected


@pytest.mark.parametrize(
    ("tz", "cron", "start", "expected"),
    [
        # 01:30 happens twice on 1 November in New York: fired once, at 01:30 EDT (05:30 UTC).
        ("America/New_York", "30 1 * * *", ms(2026, 11, 1), [ms(2026, 11, 1, 5, 30), ms(2026, 11, 2, 6, 30)]),
        # 02:30 happens twice on 25 October in Paris: once, at 02:30 CEST (00:30 UTC).
        ("Europe/Paris", "30 2 * * *", ms(2026, 10, 24, 12), [ms(2026, 10, 25, 0, 30), ms(2026, 10, 26, 1, 30)]),
    ],
)
def test_a_fixed_time_in_the_repeated_hour_fires_once(tz, cron, start, expected):
    s = spec(cron=cron, tz=tz)
    assert ticks(s, start, 2) == expected
    # a scheduler asking from inside the second pass of the hour does not get it again
    second_pass = expected[0] + HOUR - 20 * MINUTE
    assert next_tick(s, second_pass) == expected[1]


@pytest.mark.parametrize(
    ("tz", "cron", "start", "expected"),
    [
        # 02:30 does not happen on 8 March in New York: it fires at 03:00 EDT (07:00 UTC).
        ("America/New_York", "30 2 * * *", ms(2026, 3, 7, 12), [ms(2026, 3, 8, 7), ms(2026, 3, 9, 6, 30)]),
        ("Europe/Paris", "30 2 * * *", ms(2026, 3, 28, 12), [ms(2026, 3, 29, 1), ms(2026, 3, 30, 0, 30)]),
        # several skipped times fire once, right after the change
        ("Europe/Paris", "0,30 2 * * *", ms(2026, 3, 28, 12), [ms(2026, 3, 29, 1), ms(2026, 3, 30, 0)]),
    ],
)
def test_a_fixed_time_skipped_in_spring_fires_right_after_the_change(tz, cron, start, expected):
    assert ticks(spec(cron=cron, tz=tz), start, 2) == expected


@pytest.mark.parametrize(
    ("tz", "start"),
    [
        ("Europe/Paris", ms(2026, 10, 24, 23)),
        ("Europe/Paris", ms(2026, 3, 28, 23)),
        ("America/New_York", ms(2026, 11, 1, 4)),
        ("America/New_York", ms(2026, 3, 8, 5)),
    ],
)
def test_interval_entries_fire_by_elapsed_time_through_a_change(tz, start):
    five = ticks(spec(cron="*/5 * * * *", tz=tz), start, 48)  # four hours: the change is inside
    assert [b - a for a, b in zip([start, *five], five, strict=False)] == [5 * MINUTE] * 48
    hourly = ticks(spec(cron=None, every=3600, tz=tz), start, 4)
    assert hourly == [start + (i + 1) * HOUR for i in range(4)]


@settings(max_examples=300, deadline=None)
@given(
    cron=st.sampled_from(
        ["*/5 * * * *", "0 * * * *", "30 2 * * *", "0,30 1-3 * * *", "15 */2 * * *", "0 9 * * 1-5", "59 23 L * *"]
    ),
    tz=st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu"]),
    after=st.integers(ms(2025, 1, 1), ms(2028, 1, 1)),
)
def test_next_tick_is_the_first_tick_strictly_after(cron, tz, after):
    s = spec(cron=cron, tz=tz)
    first = next_tick(s, after)
    assert first > after
    second = next_tick(s, first)
    assert second > first
    # asking from anywhere before the first tick gives the first tick: none is hidden between
    for probe in (after + 1, (after + first) // 2, first - 1):
        if after <= probe < first:
            assert next_tick(s, probe) == first


# ------------------------------------------------------------------ catch-up


def test_a_new_schedule_fires_only_a_tick_falling_now():
    s = spec(cron=None, every=60)
    assert due_ticks(s, None, ms(2026, 12, 3, 15, 0, 30)) == Due([], [], ms(2026, 12, 3, 15, 1))
    assert due_ticks(s, None, ms(2026, 12, 3, 15, 1)) == Due([ms(2026, 12, 3, 15, 1)], [], ms(2026, 12, 3, 15, 2))


def test_nothing_due_between_ticks_or_before_the_last():
    s = spec(cron=None, every=60)
    last = ms(2026, 12, 3, 15, 1)
    assert due_ticks(s, last, last + 30 * SECOND) == Due([], [], last + MINUTE)
    assert due_ticks(s, last, last) == Due([], [], last + MINUTE)
    assert due_ticks(s, last, last - 5 * SECOND) == Due([], [], last + MINUTE)  # a clock behind: nothing twice


def test_an_on_time_tick_fires_whatever_the_policy():
    for policy in schedules.CATCH_UP:
        s = spec(cron=None, every=60, catch_up=policy)
        last = ms(2026, 12, 3, 15, 1)
        assert due_ticks(s, last, last + MINUTE + 300) == Due([last + MINUTE], [], last + 2 * MINUTE)


@pytest.fixture
def outage() -> tuple[int, int]:
    """A 30 s outage of every scheduler for an every=1 schedule: last fired tick, now."""
    last = ms(2026, 12, 3, 15, 0)
    return last, last + 30 * SECOND + 400


def test_latest_fires_the_newest_missed_tick_once(outage):
    last, now = outage
    due = due_ticks(spec(cron=None, every=1), last, now)
    assert due.fire == [last + 30 * SECOND]
    assert due.skipped == [last + i * SECOND for i in range(1, 30)]
    assert (due.skipped_count, due.next_ms) == (29, last + 31 * SECOND)


def test_all_fires_up_to_max_catch_up_missed_ticks_oldest_first(outage):
    last, now = outage
    due = due_ticks(spec(cron=None, every=1, catch_up="all", max_catch_up=10), last, now)
    assert due.fire == [last + i * SECOND for i in range(21, 31)]
    assert due.skipped == [last + i * SECOND for i in range(1, 21)]
    few = due_ticks(spec(cron=None, every=1, catch_up="all", max_catch_up=100), last, now)
    assert few.fire == [last + i * SECOND for i in range(1, 31)] and few.skipped == []


def test_skip_fires_only_a_tick_on_time(outage):
    last, now = outage
    due = due_ticks(spec(cron=None, every=1, catch_up="skip"), last, now)
    assert due.fire == [last + 30 * SECOND]  # 0.4 s late: the current tick, on time
    s = spec(cron="* * * * *", catch_up="skip")
    late = due_ticks(s, ms(2026, 12, 3, 15, 0), ms(2026, 12, 3, 15, 1, 20))
    assert late == Due([], [ms(2026, 12, 3, 15, 1)], ms(2026, 12, 3, 15, 2))
    on_time = due_ticks(s, ms(2026, 12, 3, 15, 0), ms(2026, 12, 3, 15, 1, 4))
    assert on_time.fire == [ms(2026, 12, 3, 15, 1)]
    assert due_ticks(s, ms(2026, 12, 3, 15, 0), ms(2026, 12, 3, 15, 1, 20), on_time_ms=30 * SECOND).fire


def test_a_long_outage_lists_the_newest_skipped_ticks_and_counts_them_all():
    last = ms(2026, 12, 1)
    due = due_ticks(spec(cron=None, every=1), last, last + DAY)
    assert due.fire == [last + DAY] and due.skipped_count == 86_399
    assert len(due.skipped) == schedules.MAX_LISTED and due.skipped[-1] == last + DAY - SECOND
    cron = due_ticks(spec(cron="* * * * *", catch_up="all", max_catch_up=3), last, last + DAY)
    assert cron.fire == [last + DAY - 2 * MINUTE, last + DAY - MINUTE, last + DAY]
    assert cron.skipped_count == 1440 - 3 and len(cron.skipped) == schedules.MAX_LISTED
    assert cron.skipped == sorted(cron.skipped) and cron.skipped[-1] == last + DAY - 3 * MINUTE


def test_a_walk_past_max_scan_jumps_to_the_newest_ticks(monkeypatch):
    monkeypatch.setattr(schedules, "MAX_SCAN", 100)
    last = ms(2026, 11, 1)
    now = last + 10 * DAY + 30 * SECOND
    due = due_ticks(spec(cron="* * * * *"), last, now)
    assert due.fire == [now - 30 * SECOND] and due.next_ms == now + 30 * SECOND
    assert 1440 <= due.skipped_count < 10 * 1440  # a lower bound once it jumped


def test_catch_up_through_a_dst_change_never_fires_a_fixed_time_twice():
    s = spec(cron="30 1 * * *", tz="America/New_York", catch_up="all")
    due = due_ticks(s, ms(2026, 10, 31), ms(2026, 11, 3))
    assert due.fire == [ms(2026, 10, 31, 5, 30), ms(2026, 11, 1, 5, 30), ms(2026, 11, 2, 6, 30)]


@settings(max_examples=200, deadline=None)
@given(
    every=st.sampled_from([1, 7, 60, 3600]),
    policy=st.sampled_from(schedules.CATCH_UP),
    most=st.integers(1, 20),
    last=st.integers(ms(2026, 1, 1), ms(2026, 1, 2)),
    gap=st.integers(0, 200 * SECOND),
)
def test_due_ticks_split_the_missed_ticks(every, policy, most, last, gap):
    s = spec(cron=None, every=every, catch_up=policy, max_catch_up=most)
    due = due_ticks(s, last, last + gap)
    both = sorted(due.skipped + due.fire)
    assert due.skipped + due.fire == both and len(set(both)) == len(both)
    assert all(last < t <= last + gap for t in both)
    assert both == [t for t in range(last + 1, last + gap + 1) if t % (every * SECOND) == 0]
    assert len(due.fire) <= (most if policy == "all" else 1)
    assert due.next_ms == next_tick(s, last + gap)


# ------------------------------------------------------------------ task ids


def test_tick_task_ids_are_deterministic_and_distinct():
    assert tick_task_id("report", 1000) == tick_task_id("report", 1000)
    ids = {tick_task_id(sid, t) for sid in ("report", "report2", "a:b") for t in (0, 1000, 2000)}
    assert len(ids) == 9
    assert tick_task_id("r", 1).startswith("s-") and len(tick_task_id("r", 1)) == 34
    assert tick_task_id("a", 11) != tick_task_id("a1", 1)


def test_catch_up_through_the_repeated_hour_fires_an_hourly_entry_every_real_hour():
    s = spec(cron="0 * * * *", tz="Europe/Paris", catch_up="all")
    due = due_ticks(s, ms(2026, 10, 24, 23, 30), ms(2026, 10, 25, 2, 30))  # 01:30 CEST to 03:30 CET
    assert due.fire == [ms(2026, 10, 25, 0), ms(2026, 10, 25, 1), ms(2026, 10, 25, 2)]  # 02:00 twice, 03:00
    assert due.next_ms == ms(2026, 10, 25, 3)


def test_schedules_is_pure_foundation():
    from tests.unit.layers import layer

    assert layer("orchestrator.schedules") == "foundation"  # transitions may take a ScheduleSpec


@settings(max_examples=100, deadline=None)
@given(
    cron=st.sampled_from(["*/5 * * * *", "0 * * * *", "30 2 * * *", "0,30 1-3 * * *", "15 */2 * * *"]),
    tz=st.sampled_from(["Europe/Paris", "America/New_York", "Australia/Lord_Howe"]),
    policy=st.sampled_from(schedules.CATCH_UP),
    last=st.sampled_from([ms(2026, 3, 28, 20), ms(2026, 10, 24, 20), ms(2026, 3, 7, 20), ms(2026, 10, 31, 20)]),
    offset=st.integers(0, 6 * HOUR),
    gap=st.integers(0, 12 * HOUR),
)
def test_due_ticks_agree_with_next_tick_through_dst(cron, tz, policy, last, offset, gap):
    s = spec(cron=cron, tz=tz, catch_up=policy, max_catch_up=4)
    last += offset
    due = due_ticks(s, last, last + gap)
    expected, tick = [], next_tick(s, last)
    while tick <= last + gap:
        expected.append(tick)
        tick = next_tick(s, tick)
    assert due.skipped + due.fire == expected and due.skipped_count == len(due.skipped)
    assert due.next_ms == tick
