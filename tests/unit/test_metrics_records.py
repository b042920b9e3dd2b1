"""metrics_records.py: the metrics hash and series decoded from raw replies (pure)."""

from __future__ import annotations

from orchestrator.metrics_records import (
    MINUTE_MS,
    QUARTER_MS,
    RUN_BUCKETS_MS,
    WAIT_BUCKETS_MS,
    decode_metrics,
    decode_rollup,
    decode_series,
    lua_constants,
    minutes,
    quarters,
    ready_time,
)

NOW = 1_800_000_000_000


def test_counters_histograms_and_singles_decode_per_label() -> None:
    raw = {
        b"enqueued:mod:job": b"7", b"enqueued:__other__": b"2",
        b"run:5:succeeded:mod:job": b"1", b"run:250:succeeded:mod:job": b"2", b"run:250:failed:mod:job": b"1",
        b"run:inf:succeeded:mod:job": b"1", b"run_ms:mod:job": b"4000", b"retried:mod:job": b"2",
        b"failed:mod:job": b"1",
        b"wait:1": b"5", b"wait:1000": b"2", b"wait_ms": b"1500", b"reaped": b"3", b"late": b"1",
    }
    m = decode_metrics("q", NOW, raw, NOW - 2500)
    assert m.enqueued == {"__other__": 2, "mod:job": 7}
    assert m.finished == {"mod:job": {"succeeded": 4, "failed": 2, "retried": 2}}  # timed and untimed added
    run = m.run_seconds["mod:job"]
    assert (run.count, run.sum) == (5, 4.0)
    cumulative = {b.le: b.count for b in run.buckets}
    assert [b.le for b in run.buckets] == [ms / 1000 for ms in RUN_BUCKETS_MS]
    assert (cumulative[0.005], cumulative[0.1], cumulative[0.25], cumulative[3600.0]) == (1, 1, 4, 4)
    assert m.wait_seconds.count == 7 and m.wait_seconds.sum == 1.5
    assert [b.le for b in m.wait_seconds.buckets] == [ms / 1000 for ms in WAIT_BUCKETS_MS]
    assert m.wait_seconds.buckets[0].count == 5 and m.wait_seconds.buckets[-1].count == 7
    assert (m.reaped, m.late_outcomes_refused, m.oldest_pending_seconds) == (3, 1, 2.5)
    assert m.notes == []
    m.model_dump_json()  # JSON-ready (no infinities)


def test_what_does_not_parse_is_left_out_with_a_note() -> None:
    raw = {b"enqueued:a": b"x1", b"whatever": b"3", b"run:abc:succeeded:a": b"1", b"succeeded:": b"1",
           b"run:5:won:a": b"1", b"enqueued:b": b"2"}
    m = decode_metrics("q", NOW, raw, None)
    assert m.enqueued == {"b": 2}
    assert len(m.notes) == 5
    assert m.oldest_pending_seconds is None and m.run_seconds == {}


def test_a_bound_not_in_the_fixed_list_counts_in_the_buckets_above_it() -> None:
    m = decode_metrics("q", NOW, {b"run:7:failed:a": b"2"}, None)
    counts = {b.le: b.count for b in m.run_seconds["a"].buckets}
    assert (counts[0.005], counts[0.01]) == (0, 2)


def test_ready_time_prefers_ready_at_then_the_later_of_created_and_run_at() -> None:
    assert ready_time(b"100", b"200", b"150") == 150
    assert ready_time(b"100", b"200", None) == 200
    assert ready_time(b"300", b"", b"") == 300
    assert ready_time(None, None, None) is None
    assert ready_time(b"x", b"200", b"bad") == 200


def test_minutes_end_with_the_current_one() -> None:
    starts = minutes(NOW + 1234, 3)
    assert starts == [NOW - 2 * MINUTE_MS, NOW - MINUTE_MS, NOW]
    assert all(s % MINUTE_MS == 0 for s in starts)


def test_series_subtract_each_snapshot_from_the_next_one_or_the_counters_now() -> None:
    starts = minutes(NOW, 4)
    snapshots = [None, {b"enqueued": b"3", b"runs": b"1"}, {}, {b"enqueued": b"10", b"runs": b"x", b"junk": b"1"}]
    now = {b"enqueued": b"12", b"runs": b"9", b"runtime_ms": b"40", b"seq": b"99"}
    points = decode_series(starts, snapshots, now)
    assert [p.enqueued for p in points] == [0, 7, 0, 2]
    assert [p.runs for p in points] == [0, 0, 0, 9]  # an unreadable snapshot value reads 0
    assert points[-1].runtime_ms == 40
    assert points[0].model_dump(mode="json")["minute"].endswith("Z")
    assert [p.enqueued for p in decode_series(starts, [None] * 4, now)] == [0, 0, 0, 0]


def test_the_lua_constants_render_the_same_numbers() -> None:
    lines = "\n".join(lua_constants())
    assert "local RUN_BUCKETS = {5, 10, 25," in lines and "3600000}" in lines
    assert "local MAX_NAMES = 100" in lines and "'__other__'" in lines


def test_quarters_are_the_complete_ones_oldest_first() -> None:
    now = NOW - NOW % QUARTER_MS + 5
    assert quarters(now, 3) == [now - 5 - 3 * QUARTER_MS, now - 5 - 2 * QUARTER_MS, now - 5 - QUARTER_MS]


def test_a_rollup_decodes_counts_and_load_and_leaves_out_what_does_not_parse() -> None:
    raw = {b"enqueued": b"6", b"runs": b"2", b"load": b"0.5000", b"load_max": b"nan", b"workers": b"-1",
           b"samples": b"2", b"other": b"9"}
    point = decode_rollup(NOW - NOW % QUARTER_MS, raw)
    assert (point.enqueued, point.runs, point.succeeded, point.load, point.load_max, point.workers) == (
        6, 2, 0, 0.5, None, None)
    assert point.samples == 2
    empty = decode_rollup(NOW - NOW % QUARTER_MS, None)
    assert (empty.enqueued, empty.load, empty.samples) == (0, None, 0)


def test_series_points_carry_the_load_sample_of_their_minute() -> None:
    starts = minutes(NOW, 2)
    snap = {b"enqueued": b"1", b"load": b"0.2500", b"workers": b"2"}
    points = decode_series(starts, [snap, None], {b"enqueued": b"3"})
    assert [(p.enqueued, p.load, p.workers) for p in points] == [(2, 0.25, 2), (0, None, None)]

