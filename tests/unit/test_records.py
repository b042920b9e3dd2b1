"""records.py: the operator API's records, decoded from raw replies (pure)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from orchestrator.errors import ValidationError
from orchestrator.models import Task, TaskState
from orchestrator.records import (
    TaskInfo,
    decode_event,
    decode_history,
    decode_stats,
    decode_task,
    make_cursor,
    parse_state,
    read_cursor,
)


def test_the_operator_record_of_a_task_keeps_every_field_of_the_task():
    assert set(Task.model_fields) <= set(TaskInfo.model_fields)  # a new Task field needs its TaskInfo twin


@pytest.mark.parametrize(
    ("state", "index", "states"),
    [
        ("pending", ("pending",), {TaskState.PENDING}),
        ("RETRYING", ("retrying",), {TaskState.RETRYING}),
        (TaskState.SCHEDULED, ("scheduled",), {TaskState.SCHEDULED}),
        ("done", ("done", "cancelled"), {TaskState.SUCCESS, TaskState.CANCELLED}),
        ("success", ("done",), {TaskState.SUCCESS}),
        ("cancelled", ("cancelled",), {TaskState.CANCELLED}),
    ],
)
def test_states_map_to_their_index(state, index, states):
    assert parse_state(state) == (index, frozenset(states))


def test_cursors_round_trip_and_garbage_is_refused():
    assert read_cursor(make_cursor("t:1", 50000000000001.0)) == ("t:1", 50000000000001.0)
    assert read_cursor(make_cursor("t", float("inf"))) == ("t", float("inf"))
    for bad in ("", "x", "1.5:", "nan:t", "abc:t"):
        with pytest.raises(ValidationError):
            read_cursor(bad)


def test_event_values_are_typed_and_bad_ones_noted():
    event = decode_event(
        "q", b"1700000000000-3",
        {b"event": b"failed", b"task": b"t1", b"attempt": b"2", b"run_at": b"1700000001000",
         b"error": b'{"type": "KeyError", "message": "x"}', b"worker": b"w1", b"priority": b"x"},
    )
    assert (event.event, event.task_id, event.queue) == ("failed", "t1", "q")
    assert event.fields["attempt"] == 2 and event.fields["run_at"] == "2023-11-14T22:13:21.000Z"
    assert event.fields["error"] == {"type": "KeyError", "message": "x"}
    assert event.fields["priority"] is None and event.notes == ["priority 'x' is not an integer"]
    assert event.sort_key() == (1700000000000, 3)
    plain = decode_event("q", "1-0", {"event": "failed", "error": "not json"})
    assert plain.fields["error"] == {"type": "Error", "message": "not json"}


def test_stats_leave_out_counters_that_are_not_integers():
    counts = {"pending": 1, "scheduled": 2, "retrying": 3, "running": 4, "success": 5, "failed": 6, "cancelled": 7}
    stats = decode_stats("q", 1700000000000, counts, {b"enqueued": b"7", b"runs": b"2",
                                                      b"runtime_ms": b"30", b"failed": b"1e3"}, [])
    assert stats.counts == counts and list(stats.counts) == list(counts) and stats.paused is False
    assert stats.totals["enqueued"] == 7 and "failed" not in stats.totals
    assert stats.avg_runtime_ms == 15.0 and len(stats.notes) == 1


def test_a_history_that_does_not_read_is_left_out_with_notes():
    good = {"worker": "w1", "token": "7", "started_at": 1700000000000, "ended_at": 1700000001000,
            "outcome": "succeeded", "error": ""}
    attempts, notes = decode_history([good, "junk", {"outcome": 5}, {"outcome": "failed", "token": True}])
    assert [a.outcome for a in attempts] == ["succeeded", "failed"] and len(notes) == 2
    assert attempts[0].ended_at == datetime(2023, 11, 14, 22, 13, 21, tzinfo=timezone.utc)
    assert attempts[1].token is None and attempts[1].worker is None
    assert decode_history({"not": "a list"}) == ([], ["history is not a list: left out"])
    info = decode_task("q", "t1", {b"id": b"t1", b"name": b"n", b"queue": b"q", b"state": b"PENDING",
                                   b"history": b'[{"outcome": "released"}, 3]'})
    assert [a.outcome for a in info.history] == ["released"] and info.notes == [
        "history entry 1 does not read as an attempt: left out"
    ]


@pytest.mark.parametrize("history", [b"not json", b'{"a": 1}'])
def test_a_spoiled_history_does_not_spoil_the_task(history):
    record = {b"id": b"t1", b"name": b"n", b"queue": b"q", b"state": b"PENDING", b"history": history}
    assert Task.from_redis(record).history == []
    assert decode_task("q", "t1", record).state is TaskState.PENDING
