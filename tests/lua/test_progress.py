"""progress.lua's and watch.lua's contracts, and the finished:<id> notice of the scripts that end a task.

Progress: only the holder of a RUNNING task's current lease writes it; every refusal
(zombie, bad fraction, data that is not JSON or too large) changes nothing, byte for byte
(``Q.fails``; a refused progress counts nothing as late). The notice: each script that
ends a task (or deletes its record) SPUBLISHes the new state on the task's shard channel
when the task is watched (watch.lua: someone waits); a retry, or a task nobody watches,
publishes nothing.
"""

from __future__ import annotations

import math

import pytest
import redis

from orchestrator.errors import (
    CorruptQueue,
    LeaseLost,
    NotSerializable,
    PayloadTooLarge,
    TaskNotFound,
    ValidationError,
)
from orchestrator.models import MAX_PROGRESS_BYTES, Progress, Task, TaskState, encode_progress
from orchestrator.script_calls import Call, run
from tests.lua.test_scripts import ERROR, Q, server_ms, spec
from tests.redis_server import snapshot

S = TaskState


@pytest.fixture
def q(r: redis.Redis) -> Q:
    return Q(r)


def report(q: Q, task_id: str, token: str, fraction: object = 0.5, data: object = None) -> Call[int]:
    text, encoded = encode_progress(fraction, data)
    return q.at().progress(task_id, token, text, encoded, max_bytes=MAX_PROGRESS_BYTES)


def raw(q: Q, task_id: str, token: str, fraction: str, data: bytes = b"null", max_bytes: int = 100) -> Call[int]:
    return q.at().progress(task_id, token, fraction, data, max_bytes=max_bytes)


def test_progress_of_a_running_task_is_stored_and_emitted(q: Q, r: redis.Redis) -> None:
    [task_id] = q.add()
    [lease] = q.claim()
    before = server_ms(r)
    at = q.run(report(q, task_id, lease.token, 0.42, {"step": "resize", "done": 3}))
    assert before <= at <= server_ms(r)
    record = r.hgetall(q.keys.task(task_id))
    assert (record[b"progress"], record[b"progress_data"], record[b"progress_at"]) == (
        b"0.42", b'{"step":"resize","done":3}', str(at).encode()
    )
    assert q.task(task_id).progress == Progress(0.42, {"step": "resize", "done": 3}, at)
    assert q.events()[-1] == {"event": "progress", "task": task_id, "fraction": "0.42",
                              "data": '{"step":"resize","done":3}'}
    q.run(report(q, task_id, lease.token, 1))
    assert q.task(task_id).progress.fraction == 1.0 and q.task(task_id).progress.data is None
    assert q.state(task_id) is S.RUNNING


def test_a_zombie_writes_nothing(q: Q) -> None:
    [task_id] = q.add()
    [lease] = q.claim()
    stale = str(int(lease.token) - 1)
    q.fails(LeaseLost, report(q, task_id, stale), task_id, late=0)
    q.fails(LeaseLost, report(q, task_id, ""), task_id, late=0)
    q.fails(TaskNotFound, report(q, "ghost", lease.token), "ghost")
    q.run(q.at().complete(task_id, lease.token, b"1", 0))
    q.fails(LeaseLost, report(q, task_id, lease.token), task_id, late=0)  # finished: too late


def test_a_reaped_attempt_cannot_report_over_the_next_one(q: Q) -> None:
    [task_id] = q.add(backoff_ms=0)
    [first] = q.claim(lease_ms=1000)
    q.run(q.at(2000).reap(10))
    q.fails(LeaseLost, report(q, task_id, first.token), task_id, late=0)  # RETRYING
    q.run(q.at(2000).promote(10))
    [second] = q.claim(offset_ms=2000)
    q.fails(LeaseLost, report(q, task_id, first.token), task_id, late=0)  # RUNNING under another token
    q.run(report(q, task_id, second.token, 0.25))
    assert q.task(task_id).progress.fraction == 0.25


def test_progress_of_a_waiting_task_is_lease_lost(q: Q) -> None:
    [task_id] = q.add()
    q.fails(LeaseLost, report(q, task_id, "1"), task_id, late=0)


@pytest.mark.parametrize("fraction", ["1.5", "-0.1", "nan", "inf", "0x1", " 0.5", "", "1e5", "0.5.5", "1" * 40])
def test_a_fraction_out_of_range_or_not_a_number_is_refused(q: Q, fraction: str) -> None:
    [task_id] = q.add()
    [lease] = q.claim()
    q.fails(ValidationError, raw(q, task_id, lease.token, fraction), "fraction")


def test_data_not_json_or_too_large_is_refused(q: Q, r: redis.Redis) -> None:
    [task_id] = q.add()
    [lease] = q.claim()
    q.fails(ValidationError, raw(q, task_id, lease.token, "0.5", b"{not json"), "not JSON")
    q.fails(ValidationError, raw(q, task_id, lease.token, "0.5", b""), "not JSON")
    exc = q.fails(PayloadTooLarge, raw(q, task_id, lease.token, "0.5", b'"' + b"x" * 100 + b'"'))
    assert str(exc) == "102"
    q.fails(ValidationError, raw(q, task_id, lease.token, "0.5", b"1", max_bytes=-1), "max_bytes")
    q.run(raw(q, task_id, lease.token, "0.5", b'"' + b"x" * 98 + b'"'))  # exactly the limit
    r.delete(q.keys.events)
    r.set(q.keys.events, "spoiled")
    q.fails(CorruptQueue, raw(q, task_id, lease.token, "0.5"), "events")


def test_progress_survives_a_retry_until_the_next_attempt_reports(q: Q) -> None:
    [task_id] = q.add(backoff_ms=0)
    [lease] = q.claim()
    at = q.run(report(q, task_id, lease.token, 0.75, "half"))
    q.run(q.at().fail(task_id, lease.token, ERROR))
    assert q.task(task_id).progress == Progress(0.75, "half", at)  # RETRYING keeps it
    q.run(q.at().promote(10))
    [again] = q.claim()
    assert q.task(task_id).progress == Progress(0.75, "half", at)
    q.run(report(q, task_id, again.token, 0.1))
    assert q.task(task_id).progress.fraction == 0.1


def test_a_spoiled_progress_reads_as_none_and_the_task_still_reads(q: Q, r: redis.Redis) -> None:
    [task_id] = q.add()
    r.hset(q.keys.task(task_id), mapping={"progress": "lots", "progress_data": "{", "progress_at": "1"})
    assert q.task(task_id).progress is None
    r.hset(q.keys.task(task_id), mapping={"progress": "2", "progress_data": "null"})
    assert q.task(task_id).progress is None


@pytest.mark.parametrize(
    ("fraction", "data", "error", "field"),
    [
        (1.5, None, ValidationError, "fraction"),
        (-0.0001, None, ValidationError, "fraction"),
        (math.nan, None, ValidationError, "fraction"),
        (True, None, ValidationError, "fraction"),
        ("0.5", None, ValidationError, "fraction"),
        (0.5, {1: "a"}, NotSerializable, "data"),
        (0.5, "x" * MAX_PROGRESS_BYTES, PayloadTooLarge, "data"),
    ],
)
def test_encode_progress_refuses_bad_input_with_its_field(
    fraction: object, data: object, error: type, field: str
) -> None:
    with pytest.raises(error) as info:
        encode_progress(fraction, data)
    assert info.value.field == field


# ------------------------------------------------------------ the finished:<id> notice


def listen(q: Q, r: redis.Redis, ids: list[str]) -> redis.client.PubSub:
    listener = r.pubsub()
    listener.ssubscribe(*(q.keys.finished(i) for i in ids))
    for _ in ids:
        message = listener.get_sharded_message(timeout=2)
        assert message is not None and message["type"] == "ssubscribe"
    return listener


def messages(q: Q, listener: redis.client.PubSub) -> list[tuple[str, str]]:
    out = []
    while (m := listener.get_sharded_message(timeout=0.2)) is not None:
        out.append((m["channel"].decode().removeprefix(q.keys.finished("")), m["data"].decode()))
    return out


def test_each_end_of_a_watched_task_is_published_on_its_channel(q: Q, r: redis.Redis) -> None:
    ids = ["ok", "bad", "again", "waiting", "gone", "lost", "unwatched"]
    for task_id in ids:
        q.run(q.at().enqueue([spec(task_id, max_retries=3 if task_id == "again" else 0)], max_payload=1 << 20))
    listener = listen(q, r, ids)
    try:
        for task_id in ids[:-1]:
            assert q.run(q.at().watch(task_id)) == "PENDING"
        leases = {lease.task_id: lease for lease in q.claim(3)}  # ok, bad, again
        q.run(q.at().complete("ok", leases["ok"].token, b"1", 0))
        q.run(q.at().fail("bad", leases["bad"].token, ERROR))
        q.run(q.at().fail("again", leases["again"].token, ERROR))  # RETRYING: not the end
        q.run(q.at().cancel("waiting", 0))
        q.run(q.at().delete("gone"))
        [lost] = q.claim(lease_ms=1000)
        assert lost.task_id == "lost"
        q.run(q.at(2000).reap(10))
        [unwatched] = q.claim()
        q.run(q.at().complete("unwatched", unwatched.token, b"1", 0))  # nobody waits: no message
        assert messages(q, listener) == [("ok", "SUCCESS"), ("bad", "FAILED"), ("waiting", "CANCELLED"),
                                         ("gone", "DELETED"), ("lost", "FAILED")]
    finally:
        listener.close()


def test_watch_marks_an_unfinished_record_once_and_leaves_a_final_one_alone(q: Q, r: redis.Redis) -> None:
    [task_id] = q.add()
    assert q.run(q.at().watch(task_id)) == "PENDING"
    assert r.hget(q.keys.task(task_id), "waiting") == b"1"
    before = snapshot(r)
    assert q.run(q.at().watch(task_id)) == "PENDING"  # marked already: nothing written
    assert snapshot(r) == before
    [lease] = q.claim()
    q.run(q.at().complete(task_id, lease.token, b"1", 0))
    [done] = q.add()
    [lease] = q.claim()
    q.run(q.at().complete(done, lease.token, b"1", 0))
    before = snapshot(r)
    assert q.run(q.at().watch(done)) == "SUCCESS"
    assert snapshot(r) == before
    r.hset(q.keys.task(done), "state", "RUNNING")
    r.hdel(q.keys.task(done), "name")  # malformed: read, not marked
    before = snapshot(r)
    assert run(r, q.at().watch(done)) == "RUNNING"
    assert snapshot(r) == before


def test_watch_refuses_a_missing_task_or_a_key_that_is_not_its_record(q: Q) -> None:
    [task_id] = q.add()
    q.fails(TaskNotFound, q.at().watch("ghost"), "ghost")
    call = q.at().watch(task_id)
    q.fails(ValidationError, Call(call.script, [q.keys.task("other")], call.args, call.decode), "record")
    q.fails(ValidationError, Call(call.script, [q.keys.pending], call.args, call.decode), "record")


def test_a_final_task_nobody_watches_costs_no_message_and_no_key(q: Q, r: redis.Redis) -> None:
    [task_id] = q.add()
    listener = listen(q, r, [task_id])
    try:
        [lease] = q.claim()
        q.run(q.at().complete(task_id, lease.token, b"1", 0))
        assert messages(q, listener) == []
    finally:
        listener.close()
    assert not any(b"finished" in key for key in r.scan_iter(count=1000))
    assert Task.from_redis(r.hgetall(q.keys.task(task_id)), task_id, q.keys.queue).state is S.SUCCESS
