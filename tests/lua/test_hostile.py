"""Hostile records: every script reads a task record as untrusted input (issue 11).

A malformed record (models.RECORD: a required field missing, a value that does not read)
is moved aside alone: FAILED with a MalformedRecord error, in the failed index, event
``malformed``; an index entry whose record is gone or not a hash is dropped with event
``dropped``. Every other task goes on as if the bad one were not there. Calls that are
refused change nothing (byte snapshots); calls with the wrong number of KEYS or ARGV are
refused before anything is written. Runs on a real redis-server, through
``orchestrator.transitions``, with ``tests.lua.test_scripts.Q`` checking the state table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import orjson
import pytest
from redis.exceptions import ResponseError

from orchestrator.errors import CorruptQueue, LeaseLost, MalformedRecord, TaskNotFound, ValidationError
from orchestrator.models import RECORD, REQUIRED, Task, TaskState, can_transition, record_problems
from orchestrator.script_calls import Call, run
from orchestrator.transitions import Transitions
from tests.lua.test_scripts import ERROR, Q
from tests.redis_server import snapshot

S = TaskState
Corrupt = Callable[[Any, str], None]  # (redis client, task key) -> None


class HostileQ(Q):
    """Q, where a record may be garbage: states() skips what is not a readable task, and a
    task may also go to FAILED from any state when a script moved it aside as malformed."""

    def states(self) -> dict[str, TaskState]:
        prefix = self.keys.task("")
        out = {}
        for key in self.r.scan_iter(match=prefix + "*", count=1000):
            if self.r.type(key) != b"hash":
                continue
            state = self.r.hget(key, "state")
            if state is not None and state.decode(errors="replace") in S.__members__:
                out[key.decode(errors="surrogateescape")[len(prefix) :]] = TaskState(state.decode())
        return out

    def run(self, call: Call[Any]) -> Any:
        before = self.states()
        reply = run(self.r, call)
        self.check(before, self.states())
        return reply

    def raises(self, exc_type: type[Exception], call: Call[Any], match: str | None = None) -> Exception:
        """The call raises exc_type; what it changed still follows the state table."""
        before = self.states()
        with pytest.raises(exc_type, match=match) as info:
            run(self.r, call)
        self.check(before, self.states())
        return info.value

    def check(self, before: dict[str, TaskState], after: dict[str, TaskState]) -> None:
        for task_id, new in after.items():
            old = before.get(task_id)
            if old is not None and old is not new and not can_transition(old, new):
                assert new is S.FAILED, f"{task_id} {old.value} -> {new.value}"
                assert self.error(task_id)["type"] == "MalformedRecord"

    def error(self, task_id: str) -> dict[str, str]:
        raw = self.r.hget(self.keys.task("").encode() + task_id.encode(errors="surrogateescape"), "error")
        return dict(orjson.loads(raw)) if raw else {}

    def moved_aside(self, task_id: str, *reasons: str) -> None:
        """task_id is FAILED as malformed, alone in its index, with the reasons given."""
        assert self.r.hget(self.keys.task(task_id), "state") == b"FAILED"
        error = self.error(task_id)
        assert error["type"] == "MalformedRecord"
        for reason in reasons:
            assert reason in error["message"]
        for index in ("pending", "scheduled", "running", "done"):
            assert task_id not in self.members(index)
        assert task_id in self.members("failed")
        malformed = [e for e in self.events() if e["event"] == "malformed" and e["task"] == task_id]
        assert len(malformed) == 1 and all(reason in malformed[0]["error"] for reason in reasons)

    def was_dropped(self, task_id: str, reason: str) -> None:
        for index in ("pending", "scheduled", "running", "failed", "done"):
            assert task_id not in self.members(index)
        assert {"event": "dropped", "task": task_id, "reason": reason} in self.events()


@pytest.fixture
def q(r: Any) -> HostileQ:
    return HostileQ(r)


def hset(**fields: str | bytes) -> Corrupt:
    return lambda r, key: r.hset(key, mapping=fields)


def hdel(*names: str) -> Corrupt:
    return lambda r, key: r.hdel(key, *names)


# Corruptions of one existing record, and what the script must say about it.
MALFORMED: dict[str, tuple[Corrupt, str]] = {
    "timeout_ms 1e3": (hset(timeout_ms="1e3"), "field timeout_ms '1e3' is not an integer"),
    "max_retries x": (hset(max_retries="x"), "field max_retries 'x' is not an integer"),
    "priority x": (hset(priority="x"), "field priority 'x' is not a priority (0-9)"),
    "priority 10": (hset(priority="10"), "field priority '10' is not a priority (0-9)"),
    "attempts -1": (hset(attempts="-1"), "field attempts '-1' is not an integer"),
    "attempts 2^53": (hset(attempts=str(2**53)), "is not an integer"),
    "name not UTF-8": (hset(name=b"job\xff"), "field name 'job\\xFF' is not UTF-8"),
    "name missing": (hdel("name"), "field name is missing"),
    "name empty": (hset(name=""), "field name '' is empty"),
    "state unknown": (hset(state="BOGUS"), "field state 'BOGUS' is not a task state"),
    "unique_key not UTF-8": (hset(unique_key=b"u\xfe"), "field unique_key 'u\\xFE' is not UTF-8"),
}


# ------------------------------------------------------------------------ claim


def evil_first(q: HostileQ, r: Any) -> list[str]:
    """Five tasks enqueued, then the issue's reproduction: a record holding only a state, at
    the head of pending."""
    ids = q.add(5)
    r.hset(q.keys.task("evil"), "state", "PENDING")
    r.zadd(q.keys.pending, {"evil": 0})
    return ids


def test_claim_moves_a_record_with_only_a_state_aside_and_claims_the_rest(q: HostileQ, r: Any) -> None:
    ids = evil_first(q, r)
    leases = q.claim(10)
    assert sorted(lease.task_id for lease in leases) == sorted(ids)
    assert all(q.state(task_id) is S.RUNNING for task_id in ids)
    q.moved_aside("evil", "field name is missing")  # (id and queue: its key says them)
    assert q.members("pending") == []
    assert q.stats()["malformed"] == 1 and q.stats()["started"] == 5


@pytest.mark.parametrize("what", sorted(MALFORMED))
def test_claim_moves_one_malformed_record_aside_and_claims_the_rest(q: HostileQ, r: Any, what: str) -> None:
    corrupt, reason = MALFORMED[what]
    ids = q.add(5)
    corrupt(r, q.keys.task(ids[2]))
    leases = q.claim(10)
    assert [lease.task_id for lease in leases] == ids[:2] + ids[3:]
    assert all(not lease.payload_error for lease in leases)
    q.moved_aside(ids[2], reason)


@pytest.mark.parametrize("kind", ["string", "list", "empty hash"])
def test_claim_drops_an_entry_whose_record_is_not_a_task_hash(q: HostileQ, r: Any, kind: str) -> None:
    ids = q.add(5)
    key = q.keys.task("evil")
    if kind == "string":
        r.set(key, "x")
    elif kind == "list":
        r.rpush(key, "x")
    else:
        r.hset(key, "unrelated", "1")  # none of the required fields: nothing to move aside
    r.zadd(q.keys.pending, {"evil": 0})
    before = r.dump(key)
    assert sorted(lease.task_id for lease in q.claim(10)) == sorted(ids)
    q.was_dropped("evil", "not a hash" if kind in ("string", "list") else "no record")
    assert r.dump(key) == before  # not ours: left as it was


def test_a_stale_entry_of_a_malformed_record_in_another_state_leaves_the_record_alone(q: HostileQ, r: Any) -> None:
    """Only the index that holds a record's state may move it aside: a stale pending entry of
    a RUNNING record (its worker holds the lease) is dropped, the record left as it is."""
    [a, b] = q.add(2)
    [lease] = q.claim()
    r.hset(q.keys.task(a), mapping={"priority": "x", "backoff_ms": "y"})  # claim reads one, reap the other
    r.zadd(q.keys.pending, {a: 0})
    before = r.hgetall(q.keys.task(a))
    assert [x.task_id for x in q.claim(5)] == [b]
    assert r.hgetall(q.keys.task(a)) == before and q.members("pending") == []
    reply = q.run(q.at(120_000).reap(10))  # where its state says it is, it is moved aside
    assert (a, S.FAILED) in [(t.task_id, t.state) for t in reply.tasks]
    q.moved_aside(a, "field backoff_ms 'y'")
    assert lease.task_id == a


def test_claim_drops_an_entry_without_a_record(q: HostileQ, r: Any) -> None:
    ids = q.add(2)
    r.zadd(q.keys.pending, {"ghost": 0})
    assert [lease.task_id for lease in q.claim(10)] == ids
    q.was_dropped("ghost", "no record")


def test_claim_takes_the_default_of_a_missing_optional_field(q: HostileQ, r: Any) -> None:
    [task_id] = q.add(priority=2, max_retries=4)
    r.hdel(q.keys.task(task_id), "priority", "max_retries", "args", "kwargs", "attempts")
    [lease] = q.claim()
    assert (lease.priority, lease.max_retries, lease.args, lease.kwargs, lease.attempt) == (5, 3, [], {}, 1)
    assert q.state(task_id) is S.RUNNING


def test_a_record_s_own_id_and_queue_fields_are_not_read(q: HostileQ, r: Any) -> None:
    """#18: a record's id and queue are its key's. Records written before held them too; what
    they hold, spoiled or not, changes nothing (no script reads them) and readers show the key's."""
    old, spoiled = q.add(), q.add()
    r.hset(q.keys.task(old[0]), mapping={"id": old[0], "queue": q.keys.queue})
    r.hset(q.keys.task(spoiled[0]), mapping={"id": b"other\xff", "queue": ""})
    leases = q.claim(5)
    assert sorted(lease.task_id for lease in leases) == sorted(old + spoiled)
    for lease in leases:
        q.run(q.at().complete(lease.task_id, lease.token, b"null", 0))
        task = q.task(lease.task_id)
        assert (task.id, task.queue, task.state) == (lease.task_id, q.keys.queue, S.SUCCESS)


def test_claim_moves_a_non_utf8_id_aside(q: HostileQ, r: Any) -> None:
    [good] = q.add()
    bad = b"evil\xff"
    r.hset(q.keys.task("").encode() + bad, mapping={"state": "PENDING", "name": "n"})
    r.zadd(q.keys.pending, {bad: 0})
    assert [lease.task_id for lease in q.claim(5)] == [good]
    assert r.hget(q.keys.task("").encode() + bad, "state") == b"FAILED"
    assert r.zscore(q.keys.failed, bad) is not None


def test_a_quarantined_record_reads_back_as_failed_with_its_reason(q: HostileQ, r: Any) -> None:
    ids = q.add(1, key="order-7")
    r.hset(q.keys.task(ids[0]), "timeout_ms", "1e3")
    assert q.claim() == []
    task = q.task(ids[0])  # the bad field is back at its default: Task.from_redis reads it
    assert (task.state, task.timeout_ms, task.error and task.error.type) == (S.FAILED, 300_000, "MalformedRecord")
    assert task.error is not None and "'1e3'" in task.error.message
    assert r.get(q.keys.unique("order-7")) is None  # its idempotency key is released


# ------------------------------------------------------- the claim reply, decoded


def test_one_bad_value_in_a_claim_reply_fails_that_task_alone(q: HostileQ) -> None:
    """Whatever reaches the worker is decoded task by task (a record the script let through)."""
    call = q.at().claim("w1", 3, 1000)
    good = [b"a", b"1", b"m:f", b"[1]", b"{}", b"1", b"3", b"0", b"5"]
    rows = {
        "timeout_ms 1e3": [b"b", b"2", b"m:f", b"[]", b"{}", b"1", b"3", b"1e3", b"5"],
        "priority x": [b"c", b"3", b"m:f", b"[]", b"{}", b"1", b"3", b"0", b"x"],
        "name not UTF-8": [b"d", b"4", b"m:\xff", b"[]", b"{}", b"1", b"3", b"0", b"5"],
    }
    for bad in rows.values():
        a, b, a2 = call.decode(good + bad + good)
        assert a == a2 and a.args == [1] and not a.payload_error
        assert b.task_id == bad[0].decode() and b.token == bad[1].decode()
        assert "malformed" in b.payload_error and b.args == [] and b.kwargs == {}


# ----------------------------------------------------------- the other scripts


def test_promote_moves_malformed_records_aside_and_promotes_the_rest(q: HostileQ, r: Any) -> None:
    ids = q.add(4, delay_ms=1000)
    r.hset(q.keys.task(ids[1]), "priority", "1e3")
    r.set(q.keys.task("evil"), "x")
    r.zadd(q.keys.scheduled, {"evil": 0})
    reply = q.run(q.at(2000).promote(10))
    assert reply.moved == 3
    assert sorted(q.members("pending")) == sorted(ids[:1] + ids[2:])
    q.moved_aside(ids[1], "field priority '1e3'")
    q.was_dropped("evil", "not a hash")


def test_reap_moves_malformed_records_aside_and_reaps_the_rest(q: HostileQ, r: Any) -> None:
    ids = q.add(3)
    q.claim(3, lease_ms=1000)
    r.hset(q.keys.task(ids[0]), "backoff_ms", "soon")
    r.delete(q.keys.task(ids[1]))
    reply = q.run(q.at(5000).reap(10))
    assert sorted((t.task_id, t.state) for t in reply.tasks) == sorted([(ids[0], S.FAILED), (ids[2], S.RETRYING)])
    q.moved_aside(ids[0], "field backoff_ms 'soon' is not an integer")
    q.was_dropped(ids[1], "no record")
    assert q.members("running") == []


def test_reap_drops_a_running_entry_whose_record_is_a_string(q: HostileQ, r: Any) -> None:
    [a, b] = q.add(2)
    q.claim(2, lease_ms=1000)
    r.delete(q.keys.task(a))
    r.set(q.keys.task(a), "x")
    reply = q.run(q.at(5000).reap(10))
    assert [(t.task_id, t.state) for t in reply.tasks] == [(b, S.RETRYING)]
    q.was_dropped(a, "not a hash")


@pytest.mark.parametrize("script", ["complete", "fail"])
def test_an_outcome_for_a_malformed_record_moves_it_aside(q: HostileQ, r: Any, script: str) -> None:
    [task_id, other] = q.add(2)
    leases = q.claim(2)
    r.hset(q.keys.task(task_id), "started_at", "yesterday")
    t = q.at()
    calls = {
        "complete": lambda lease: t.complete(lease.task_id, lease.token, b"1", 0),
        "fail": lambda lease: t.fail(lease.task_id, lease.token, ERROR),
    }
    exc = q.raises(MalformedRecord, calls[script](leases[0]), "field started_at 'yesterday' is not an integer")
    assert isinstance(exc, MalformedRecord) and exc.task_id == task_id
    q.moved_aside(task_id, "field started_at 'yesterday'")
    q.run(calls[script](leases[1]))  # the other task is untouched
    assert q.state(other) in (S.SUCCESS, S.RETRYING)


@pytest.mark.parametrize("script", ["complete", "fail"])
def test_an_outcome_under_a_stale_token_changes_nothing_even_when_malformed(q: HostileQ, r: Any, script: str) -> None:
    [task_id] = q.add()
    [lease] = q.claim()
    r.hset(q.keys.task(task_id), "jitter", "yes")
    t = q.at()
    call = t.complete(task_id, "999", b"1", 0) if script == "complete" else t.fail(task_id, "999", ERROR)
    q.fails(LeaseLost, call)
    r.delete(q.keys.task(task_id))
    r.set(q.keys.task(task_id), "x")
    call = t.complete(task_id, lease.token, b"1", 0) if script == "complete" else t.fail(task_id, lease.token, ERROR)
    q.fails(TaskNotFound, call)


def test_heartbeat_reports_a_malformed_or_vanished_record_lost_and_changes_it_not(q: HostileQ, r: Any) -> None:
    ids = q.add(3)
    leases = q.claim(3)
    r.hset(q.keys.task(ids[0]), "cancel_requested", "maybe")
    r.delete(q.keys.task(ids[1]))
    r.set(q.keys.task(ids[1]), "x")
    before = {i: r.dump(q.keys.task(i)) for i in ids[:2]}
    reply = q.run(q.at().heartbeat("w1", 60_000, {}, [(lease.task_id, lease.token) for lease in leases]))
    assert sorted(reply.lost) == sorted(ids[:2])
    assert {i: r.dump(q.keys.task(i)) for i in ids[:2]} == before


def test_release_moves_a_malformed_record_aside_and_releases_the_rest(q: HostileQ, r: Any) -> None:
    ids = q.add(3)
    leases = q.claim(3)
    r.hset(q.keys.task(ids[1]), "score", "abc")
    released = q.run(q.at().release([(lease.task_id, lease.token) for lease in leases]))
    assert released == [ids[0], ids[2]]
    q.moved_aside(ids[1], "field score 'abc' is not an integer")
    assert q.members("pending") == [ids[0], ids[2]]


def test_cancel_moves_a_malformed_waiting_record_aside(q: HostileQ, r: Any) -> None:
    [task_id, other] = q.add(2)
    r.hset(q.keys.task(task_id), "name", b"\xc0\xaf")  # an overlong '/': not UTF-8
    q.raises(MalformedRecord, q.at().cancel(task_id, 0), "field name")
    q.moved_aside(task_id, "is not UTF-8")
    assert q.members("pending") == [other]
    r.set(q.keys.task("str"), "x")
    q.fails(TaskNotFound, q.at().cancel("str", 0))


def test_retry_failed_leaves_malformed_records_failed(q: HostileQ, r: Any) -> None:
    bad = q.fail_to_dead_letter()
    good = q.fail_to_dead_letter()
    r.hdel(q.keys.task(bad), "name")
    q.fails(MalformedRecord, q.at().retry_failed([bad, good]), "field name is missing")
    r.zadd(q.keys.failed, {"ghost": 0})
    assert q.run(q.at().retry_failed()) == [good]
    assert q.members("failed") == [bad]
    q.was_dropped("ghost", "no record")


def test_purge_deletes_records_that_are_not_hashes(q: HostileQ, r: Any) -> None:
    ids = q.add(2)
    r.delete(q.keys.task(ids[0]))
    r.set(q.keys.task(ids[0]), "x")
    assert q.run(q.at().purge(q.keys.pending, 10)) == 2
    assert r.exists(q.keys.task(ids[0]), q.keys.task(ids[1])) == 0


# ------------------------------------------------------------ the call's shape


CALLS: dict[str, Callable[[Transitions], Call[Any]]] = {
    "claim": lambda t: t.claim("w1", 5, 60_000),
    "heartbeat": lambda t: t.heartbeat("w1", 60_000, {}, [("t", "1")]),
    "complete": lambda t: t.complete("t", "1", b"1", 0),
    "fail": lambda t: t.fail("t", "1", ERROR),
    "release": lambda t: t.release([("t", "1")]),
    "promote": lambda t: t.promote(10),
    "reap": lambda t: t.reap(10),
    "cancel": lambda t: t.cancel("t", 0),
    "retry_failed": lambda t: t.retry_failed(["t"]),
    "purge": lambda t: t.purge(t.keys.pending, 10),
}


def reshaped(call: Call[Any], how: str) -> Call[Any]:
    keys, args = list(call.keys), list(call.args)
    if how == "one KEY less":
        keys = keys[:-1]
    elif how == "one KEY more":
        keys = [*keys, keys[0]]
    elif how == "a KEY outside the queue":
        keys = ["orch:{other}:pending", *keys[1:]]
    elif how == "two KEYS":
        keys = keys[:2]
    return replace(call, keys=keys, args=args)


@pytest.mark.parametrize("how", ["one KEY less", "one KEY more", "a KEY outside the queue", "two KEYS"])
@pytest.mark.parametrize("script", sorted(CALLS))
def test_a_call_with_the_wrong_keys_is_refused_before_any_write(
    q: HostileQ, script: str, how: str, backend: Any
) -> None:
    [task_id] = q.add(id="t")
    q.claim()
    q.add(2)
    if backend.cluster and how == "a KEY outside the queue":  # Redis Cluster refuses it before the script runs
        q.fails(ResponseError, reshaped(CALLS[script](q.at()), how), "the same slot")  # CROSSSLOT
    else:
        q.fails(ValidationError, reshaped(CALLS[script](q.at()), how), "INVALID|KEYS")
    assert q.state(task_id) is S.RUNNING


@pytest.mark.parametrize("script", ["claim", "complete", "fail", "promote", "reap", "cancel", "purge"])
def test_a_call_with_an_extra_or_missing_argument_is_refused(q: HostileQ, script: str) -> None:
    q.add(2)
    call = CALLS[script](q.at())
    q.fails(ValidationError, replace(call, args=[*call.args, "extra"]), "ARGV")
    q.fails(ValidationError, replace(call, args=list(call.args)[:-1]), "ARGV")


# ------------------------------------------------------------ one schema, two readers


def test_python_and_lua_read_records_alike(q: HostileQ, r: Any) -> None:
    """The same corruptions that the scripts move aside make Task.from_redis raise, with
    the same words; a missing optional field reads as its default in both."""
    for what, (corrupt, reason) in MALFORMED.items():
        [task_id] = q.add()
        corrupt(r, q.keys.task(task_id))
        with pytest.raises(MalformedRecord) as info:
            q.task(task_id)
        assert reason in str(info.value), what
    [task_id] = q.add()
    optional = [name for name, (_, default) in RECORD.items() if default is not REQUIRED]
    r.hdel(q.keys.task(task_id), *optional)
    assert record_problems({k.decode(): v for k, v in r.hgetall(q.keys.task(task_id)).items()}) == []
    task = Task.from_redis(r.hgetall(q.keys.task(task_id)), task_id, q.keys.queue)
    assert (task.priority, task.args, task.jitter, task.run_at) == (5, [], True, None)


# ------------------------------------------------------------ queue-wide keys


def wrong_type(r: Any, key: str) -> None:
    kind = r.type(key)
    r.delete(key)
    if kind == b"string":
        r.rpush(key, "x")
    else:
        r.set(key, "x")


@pytest.mark.parametrize("script", sorted(CALLS))
def test_a_queue_key_of_the_wrong_type_is_refused_before_any_write(q: HostileQ, r: Any, script: str) -> None:
    """Each KEY of a script, of another type: one clear refusal that changes nothing (where
    scripts used to fail halfway, after popping or moving tasks), unless this call does not
    write that key at all (claim checks failed and wake only when it will write them)."""
    [task_id] = q.add(id="t")
    q.claim()
    r.hset(q.keys.task("t"), "token", "1")  # the token CALLS use
    q.add(2, delay_ms=0)
    q.add(1, delay_ms=1)
    r.set(q.keys.tokens, "5")
    refused = set()
    for key in CALLS[script](q.at()).keys:
        saved = r.dump(key)
        wrong_type(r, key)
        before = snapshot(r)
        try:
            run(r, CALLS[script](q.at(10_000)))
        except CorruptQueue as exc:
            assert key in str(exc) and snapshot(r) == before
            refused.add(key)
        else:
            assert snapshot(r)[key.encode()] == before[key.encode()], f"{key} was written"
        r.flushdb()
        q.add(id="t")
        q.claim()
        r.hset(q.keys.task("t"), "token", "1")
        q.add(2, delay_ms=0)
        q.add(1, delay_ms=1)
        r.set(q.keys.tokens, "5")
        del saved
    k = q.keys
    # (claim reads a paused key of any type as paused: it takes nothing and writes nothing)
    lazy = {k.failed, k.wake, k.paused} if script == "claim" else {k.failed} if script == "complete" else set()
    lazy |= {k.metrics, k.names}  # metrics are best effort: a spoiled metrics key costs the count, not the call
    assert refused == set(CALLS[script](q.at()).keys) - lazy
    assert q.state(task_id) is S.RUNNING


COUNTERS = {  # a stats counter each script bumps
    "claim": "started", "complete": "succeeded", "fail": "retried", "release": "seq", "promote": "seq",
    "reap": "reaped", "cancel": "cancelled", "retry_failed": "requeued", "purge": "purged",
}


@pytest.mark.parametrize("script", sorted(COUNTERS))
@pytest.mark.parametrize("value", ["x", "1e3", "1.5", ""])
def test_a_counter_that_is_not_an_integer_is_refused_before_any_write(
    q: HostileQ, r: Any, script: str, value: str
) -> None:
    q.add(id="t")
    q.claim()
    q.add(2)
    r.hset(q.keys.stats, COUNTERS[script], value)
    q.fails(CorruptQueue, CALLS[script](q.at(10_000)), f"{COUNTERS[script]} .* is not a count")


@pytest.mark.parametrize("value", ["x", "-1", "1e3"])
def test_claim_refuses_a_token_counter_that_is_not_a_count(q: HostileQ, r: Any, value: str) -> None:
    q.add(3)
    r.set(q.keys.tokens, value)
    q.fails(CorruptQueue, q.at().claim("w1", 5, 60_000), "tokens is not a count")


def test_claim_goes_on_from_the_token_counter_stats_kept_before(q: HostileQ, r: Any) -> None:
    q.add(2)
    kept = 9_000_000_000_000_041  # past Redis TIME in microseconds: the higher of the two wins
    r.hset(q.keys.stats, "tokens", kept)  # a queue from before the counter had its own key
    [a] = q.claim()
    assert a.token == str(kept + 1) and r.get(q.keys.tokens) == str(kept + 1).encode()
    assert r.hget(q.keys.stats, "tokens") is None
    r.hset(q.keys.stats, "tokens", "0")  # written by anyone: no longer read
    [b] = q.claim()
    assert b.token == str(kept + 2)
