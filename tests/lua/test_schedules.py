"""The schedule scripts' contracts (schedule_upsert, _fire, _remove, _pause) on a real redis-server.

The compare-and-set of the last fired tick is what makes any number of schedulers fire
each tick once: two fires that expected the same last tick create one task, and every
refusal (stale, gone, bad arguments) changes nothing at all (byte snapshots).
"""

from __future__ import annotations

import pytest

from orchestrator.errors import CorruptQueue, ValidationError
from orchestrator.models import TaskState
from orchestrator.script_calls import run
from orchestrator.transitions import FireReply
from tests.lua.test_scripts import Q, server_ms, spec
from tests.redis_server import snapshot

SID = "nightly"
TIMING = {"every": "60"}
FIELDS = {"task": "tests.jobs:job", "queue": "default"}


@pytest.fixture
def q(r) -> Q:
    return Q(r)


def upsert(q: Q, next_ms: int = 10**13, timing=TIMING, fields=FIELDS, offset_ms: int = 0) -> str:
    return run(q.r, q.at(offset_ms).schedule_upsert(SID, next_ms, timing, fields))


def record(q: Q) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in q.r.hgetall(q.keys.schedule(SID)).items()}


def fire(q: Q, expected: str, ticks: list[int], skipped=(), next_ms: int = 10**13, **kw):
    task = spec("ignored")
    pairs = [(t, f"{SID}@{t}") for t in ticks]
    return q.at().schedule_fire(SID, expected, next_ms, task, pairs, skipped, **kw)


def test_upsert_creates_then_an_unchanged_declaration_writes_nothing(q, r):
    before_create = server_ms(r)
    assert upsert(q, next_ms=5000) == "created"
    rec = record(q)
    assert rec["last_tick"] == "" and rec["next_ms"] == "5000" and rec["paused"] == "0"
    assert int(rec["since"]) >= before_create and rec["every"] == "60" and rec["task"] == "tests.jobs:job"
    assert r.zscore(q.keys.schedules, SID) == 5000
    before = snapshot(r)
    assert upsert(q, next_ms=9000) == "unchanged"
    assert snapshot(r) == before


def test_a_changed_timing_keeps_last_tick_and_moves_since_and_next(q, r):
    upsert(q, next_ms=5000)
    assert run(r, fire(q, "", [4000], next_ms=64000)) == FireReply("fired", 1)
    since = record(q)["since"]
    assert upsert(q, next_ms=70000, timing={"every": "30"}, offset_ms=10_000) == "updated"
    rec = record(q)
    assert rec["last_tick"] == "4000" and rec["every"] == "30" and rec["next_ms"] == "70000"
    assert int(rec["since"]) > int(since)
    assert r.zscore(q.keys.schedules, SID) == 70000


def test_a_changed_payload_keeps_an_earlier_next_and_since(q, r):
    upsert(q, next_ms=5000)
    since = record(q)["since"]
    assert upsert(q, next_ms=9000, fields={**FIELDS, "priority": "1"}, offset_ms=10_000) == "updated"
    rec = record(q)
    assert rec["next_ms"] == "5000" and rec["since"] == since and rec["priority"] == "1"


def other_record(call, q: Q):
    """The call with its record key naming another schedule than its id."""
    return call.__class__(call.script, [q.keys.schedule("other"), *call.keys[1:]], call.args, call.decode)


def test_upsert_refuses_engine_field_names_and_bad_numbers(q):
    upsert(q)
    for call in (
        q.at().schedule_upsert(SID, 1, {}, {"last_tick": "1"}),
        q.at().schedule_upsert(SID, -1, {}, FIELDS),
        q.at().schedule_upsert(SID, 1, {}, {}),
        other_record(q.at().schedule_upsert(SID, 1, {}, FIELDS), q),
    ):
        q.fails(ValidationError, call)


def test_fire_creates_the_ticks_task_pending_and_advances(q, r):
    upsert(q)
    assert q.run(fire(q, "", [1000], next_ms=61000)) == FireReply("fired", 1)
    task = q.task(f"{SID}@1000")
    assert task.state is TaskState.PENDING and task.name == "tests.jobs:job"
    assert q.members("pending") == [f"{SID}@1000"]
    rec = record(q)
    assert rec["last_tick"] == "1000" and rec["next_ms"] == "61000" and rec["fired"] == "1"
    assert r.zscore(q.keys.schedules, SID) == 61000
    assert r.hget(q.keys.metrics, f"schedule_ticks:fired:{SID}") == b"1"
    assert q.stats()["enqueued"] == 1
    assert [e["event"] for e in q.events()][-2:] == ["enqueued", "tick"]


def test_two_fires_expecting_the_same_tick_create_one_task(q, r):
    upsert(q)
    first = fire(q, "", [1000])
    assert q.run(first) == FireReply("fired", 1)
    before = snapshot(r)
    assert run(r, first) == FireReply("stale", 0, "1000")  # the racing scheduler, or a resend
    assert run(r, fire(q, "", [1000, 2000])) == FireReply("stale", 0, "1000")
    assert snapshot(r) == before
    assert q.members("pending") == [f"{SID}@1000"]


def test_catch_up_counts_fired_caught_up_and_skipped(q, r):
    upsert(q)
    q.run(fire(q, "", [1000]))
    assert q.run(fire(q, "1000", [4000, 5000], skipped=[2000, 3000])) == FireReply("fired", 2)
    rec = record(q)
    assert rec["last_tick"] == "5000"
    assert (rec["fired"], rec["caught_up"], rec["skipped"]) == ("2", "1", "2")
    assert set(q.members("pending")) == {f"{SID}@1000", f"{SID}@4000", f"{SID}@5000"}


def test_skipped_ticks_alone_advance_last_tick(q, r):
    upsert(q)
    assert q.run(fire(q, "", [], skipped=[1000, 2000], skipped_count=50)) == FireReply("fired", 0)
    assert record(q)["last_tick"] == "2000" and record(q)["skipped"] == "50"
    assert q.states() == {}


def test_an_existing_task_id_is_left_alone(q, r):
    upsert(q)
    [existing] = q.add(1)
    q.r.rename(q.keys.task(existing), q.keys.task(f"{SID}@1000"))
    q.r.zrem(q.keys.pending, existing)
    q.r.zadd(q.keys.pending, {f"{SID}@1000": 1})
    before = q.r.hgetall(q.keys.task(f"{SID}@1000"))
    assert q.run(fire(q, "", [1000])) == FireReply("fired", 0)
    assert q.r.hgetall(q.keys.task(f"{SID}@1000")) == before
    assert record(q)["last_tick"] == "1000"


def test_overlap_skip_skips_while_the_previous_task_is_unfinished(q, r):
    upsert(q)
    q.run(fire(q, "", [1000]))
    call = fire(q, "1000", [2000], overlap_skip=True, previous=f"{SID}@1000")
    assert q.run(call) == FireReply("fired", 0)
    rec = record(q)
    assert rec["last_tick"] == "2000" and rec["skipped"] == "1"
    [lease] = q.claim()
    q.run(q.at().complete(lease.task_id, lease.token, b"null", 0))
    call = fire(q, "2000", [3000], overlap_skip=True, previous=f"{SID}@1000")
    assert q.run(call) == FireReply("fired", 1)


def test_fire_refusals_change_nothing(q, r):
    upsert(q)
    q.run(fire(q, "", [2000]))
    for call, match in (
        (fire(q, "2000", [1000]), "tick"),  # not after the expected tick
        (fire(q, "2000", [3000, 3000]), "tick"),
        (fire(q, "x", [3000]), "expected"),
        (fire(q, "2000", [], skipped=[1500]), "tick"),
    ):
        q.fails(ValidationError, call, match)
    bad = fire(q, "2000", [3000])
    args = list(bad.args)
    args[9] = "10"  # priority
    q.fails(ValidationError, bad.__class__(bad.script, bad.keys, args, bad.decode), "priority")


def test_a_spoiled_tick_counter_refuses_the_fire_before_any_write(q, r):
    """The counters are bumped after the record's first write: a hand-written one that is not
    an integer must refuse the call before it, not leave the tick advanced and its task unmade."""
    upsert(q)
    q.run(fire(q, "", [2000]))
    r.hset(q.keys.schedule(SID), "caught_up", "many")
    q.fails(CorruptQueue, fire(q, "2000", [3000]), "caught_up")


def test_remove_then_fire_is_gone_and_pause_stops_firing(q, r):
    upsert(q)
    assert run(r, q.at().schedule_pause(SID, True)) == 1
    assert r.zcard(q.keys.schedules) == 0  # out of the index while paused: no scheduler reads it
    assert upsert(q, fields={**FIELDS, "priority": "2"}) == "updated"
    assert r.zcard(q.keys.schedules) == 0
    assert run(r, q.at().schedule_pause(SID, True)) == 0
    before = snapshot(r)
    assert run(r, fire(q, "", [1000])) == FireReply("gone", 0, "")
    assert snapshot(r) == before
    assert run(r, q.at().schedule_pause(SID, False)) == 1
    assert r.zscore(q.keys.schedules, SID) is not None and record(q)["paused"] == "0"
    assert run(r, q.at().schedule_remove(SID)) is True
    assert r.exists(q.keys.schedule(SID)) == 0 and r.zcard(q.keys.schedules) == 0
    before = snapshot(r)
    assert run(r, q.at().schedule_remove(SID)) is False
    assert run(r, fire(q, "", [1000])) == FireReply("gone", 0, "")
    assert run(r, q.at().schedule_pause(SID, True)) == -1
    assert snapshot(r) == before


def test_set_aside_moves_a_due_schedule_ahead_and_nothing_else(q, r):
    """A schedule whose record does not read is pushed out of the due range (its record
    untouched); one not due any more (fired, declared again) or gone is left alone."""
    upsert(q, next_ms=1000)
    r.hset(q.keys.schedule(SID), "args", "[1,")  # spoiled by hand
    rec = r.dump(q.keys.schedule(SID))
    until = server_ms(r) + 60_000
    assert run(r, q.at().schedule_set_aside(SID, until, "field 'args' does not read")) is True
    assert r.zscore(q.keys.schedules, SID) == until and r.dump(q.keys.schedule(SID)) == rec
    [event] = [e for e in q.events() if e["event"] == "schedule_set_aside"]
    assert event["schedule"] == SID and event["until"] == str(until) and "args" in event["why"]
    before = snapshot(r)
    assert run(r, q.at().schedule_set_aside(SID, until + 1, "again")) is False  # not due: untouched
    assert run(r, q.at().schedule_set_aside("absent", until, "gone")) is False
    assert snapshot(r) == before
    assert run(r, q.at(offset_ms=61_000).schedule_set_aside(SID, until + 61_000, "again")) is True


def test_set_aside_refusals_change_nothing(q, r):
    upsert(q, next_ms=1000)
    for call, match in (
        (q.at().schedule_set_aside(SID, -1, "why"), "until"),
        (q.at().schedule_set_aside(SID, 5, ""), "why"),
        (q.at().schedule_set_aside(SID, 5, "x" * 501), "why"),
        (other_record(q.at().schedule_set_aside(SID, 5, "why"), q), "id"),
    ):
        q.fails(ValidationError, call, match)
    r.delete(q.keys.schedules)
    r.set(q.keys.schedules, "x")
    q.fails(CorruptQueue, q.at().schedule_set_aside(SID, 5, "why"), "schedules")
