"""Each Lua script's contract, on a real redis-server, through orchestrator.transitions.

Every call goes through ``Q.run``, which records each task's state before and after and
asserts that every change is an edge of ``models.TRANSITIONS`` and that each task sits in
exactly the index its state names. Errors are checked with ``Q.fails``, which asserts the
whole database is byte-for-byte unchanged. The clock is moved with ``clock_offset_ms``.
"""

from __future__ import annotations

import uuid

import orjson
import pytest

from orchestrator.errors import (
    InvalidTransition,
    LeaseLost,
    MalformedRecord,
    PayloadTooLarge,
    TaskNotFound,
    ValidationError,
)
from orchestrator.keys import QueueKeys
from orchestrator.models import INDEX_OF, INDEXES, TRANSITIONS, Task, TaskState, can_transition
from orchestrator.records import decode_task
from orchestrator.script_calls import Call, run
from orchestrator.transitions import FailReply, PromoteReply, Reaped, TaskSpec, Transitions
from tests.lua.limits import NO_OBJECT_ENCODING
from tests.redis_server import late_count, snapshot, without_late

S = TaskState
MAX_PAYLOAD = 1 << 20
ERROR = orjson.dumps({"type": "ValueError", "message": "boom", "traceback": "Traceback ..."})


def spec(
    id: str | None = None,
    *,
    name: str = "tests.jobs:job",
    priority: int = 5,
    args: tuple = (),
    kwargs: dict | None = None,
    max_retries: int = 3,
    timeout_ms: int = 30_000,
    backoff_ms: int = 1000,
    backoff_max_ms: int = 60_000,
    jitter: bool = False,
    delay_ms: int = 0,
    key: str = "",
    unique_key: str = "",
) -> TaskSpec:
    return TaskSpec(
        id=id or uuid.uuid4().hex,
        name=name,
        priority=priority,
        args=orjson.dumps(list(args)),
        kwargs=orjson.dumps(kwargs or {}),
        max_retries=max_retries,
        timeout_ms=timeout_ms,
        backoff_ms=backoff_ms,
        backoff_max_ms=backoff_max_ms,
        jitter=jitter,
        delay_ms=delay_ms,
        key=key,
        unique_key=unique_key,
    )


def server_ms(r) -> int:
    sec, usec = r.time()
    return sec * 1000 + usec // 1000


class Q:
    """One queue on the test server; runs calls and checks the lifecycle after each."""

    def __init__(self, r, queue: str = "default") -> None:
        self.r = r
        self.keys = QueueKeys(queue)
        self.seen: set[tuple[TaskState, TaskState]] = set()

    def at(self, offset_ms: int = 0, **options) -> Transitions:
        """The queue's transitions with Redis's clock shifted by ``offset_ms``."""
        return Transitions(self.keys, clock_offset_ms=offset_ms, **options)

    # --------------------------------------------------------------- checks

    def states(self) -> dict[str, TaskState]:
        prefix = self.keys.task("")
        out = {}
        for key in self.r.scan_iter(match=prefix + "*", count=1000):
            state = self.r.hget(key, "state")
            if state is not None:
                out[key.decode()[len(prefix) :]] = TaskState(state.decode())
        return out

    def run(self, call: Call):
        before = self.states()
        reply = run(self.r, call)
        after = self.states()
        name = call.script.name
        for task_id, new in after.items():
            old = before.get(task_id)
            if old is None:
                assert name in ("enqueue", "schedule_fire"), f"{name} created {task_id}"
                assert new in (S.PENDING, S.SCHEDULED)
            elif old is not new:
                assert can_transition(old, new), f"{name} moved {task_id} {old.value} -> {new.value}"
                self.seen.add((old, new))
        assert before.keys() - after.keys() == set() or name in ("purge", "delete"), f"{name} deleted a record"
        self.check_indexes(after)
        return reply

    def check_indexes(self, states: dict[str, TaskState]) -> None:
        members = {index: set(self.members(index)) for index in INDEXES}
        for task_id, state in states.items():
            for index in INDEXES:
                assert (task_id in members[index]) is (index == INDEX_OF[state]), (task_id, state, index)
        for index, ids in members.items():
            assert ids <= states.keys(), f"{index} holds ids without a record"

    def fails(
        self, exc_type: type[Exception], call: Call, match: str | None = None, *, late: int | None = None
    ) -> Exception:
        """The call raises exc_type and changes nothing at all, but for one counter: a
        LEASE_LOST refusal adds ``late`` (1 unless told) to the metrics field late."""
        if late is None:
            late = 1 if exc_type is LeaseLost else 0
        before = snapshot(self.r)
        with pytest.raises(exc_type, match=match) as info:
            run(self.r, call)
        after = snapshot(self.r)
        assert late_count(after, self.keys.metrics) == late_count(before, self.keys.metrics) + late, "late"
        assert without_late(after, self.keys.metrics) == without_late(before, self.keys.metrics)
        return info.value

    # -------------------------------------------------------------- helpers

    def add(self, n: int = 1, **over) -> list[str]:
        specs = [spec(**over) for _ in range(n)]
        return [e.id for e in self.run(self.at().enqueue(specs, max_payload=MAX_PAYLOAD))]

    def claim(self, n: int = 1, worker: str = "w1", lease_ms: int = 60_000, offset_ms: int = 0):
        return self.run(self.at(offset_ms).claim(worker, n, lease_ms))

    def task(self, task_id: str) -> Task:
        return Task.from_redis(self.r.hgetall(self.keys.task(task_id)), task_id, self.keys.queue)

    def state(self, task_id: str) -> TaskState:
        return self.task(task_id).state

    def members(self, index: str) -> list[str]:
        return [m.decode() for m in self.r.zrange(getattr(self.keys, index), 0, -1)]

    def score(self, index: str, task_id: str) -> float | None:
        return self.r.zscore(getattr(self.keys, index), task_id)

    def stats(self) -> dict[str, int]:
        return {k.decode(): int(v) for k, v in self.r.hgetall(self.keys.stats).items()}

    def events(self) -> list[dict[str, str]]:
        return [
            {k.decode(): v.decode() for k, v in fields.items()} for _, fields in self.r.xrange(self.keys.events)
        ]

    def fail_to_dead_letter(self, **over) -> str:
        [task_id] = self.add(max_retries=0, **over)
        [lease] = self.claim()
        self.run(self.at().fail(task_id, lease.token, ERROR))
        return task_id


@pytest.fixture
def q(r) -> Q:
    return Q(r)


# --------------------------------------------------------------------- enqueue


def test_enqueue_writes_a_readable_record(q, r):
    before = server_ms(r)
    replies = q.run(
        q.at().enqueue(
            [spec("t1", priority=2, args=(1, "a"), kwargs={"k": [1]}, max_retries=4, timeout_ms=5000)],
            max_payload=MAX_PAYLOAD,
        )
    )
    after = server_ms(r)
    assert [(e.id, e.created) for e in replies] == [("t1", True)]
    task = q.task("t1")
    assert (task.state, task.queue, task.name, task.priority) == (S.PENDING, "default", "tests.jobs:job", 2)
    assert (task.args, task.kwargs, task.attempts) == ([1, "a"], {"k": [1]}, 0)
    assert (task.max_retries, task.timeout_ms) == (4, 5000)
    assert before <= task.created_at == task.run_at <= after
    assert q.members("pending") == ["t1"]
    assert q.stats()["enqueued"] == 1
    assert q.events()[-1] == {
        "event": "enqueued", "task": "t1", "name": "tests.jobs:job", "priority": "2", "state": "PENDING"
    }
    assert r.llen(q.keys.wake) == 1  # an idle worker is woken


def test_enqueue_delayed_goes_to_scheduled_at_run_at(q, r):
    before = server_ms(r)
    [task_id] = q.add(delay_ms=30_000)
    task = q.task(task_id)
    assert task.state is S.SCHEDULED
    assert task.run_at == task.created_at + 30_000
    assert before + 30_000 <= q.score("scheduled", task_id) == task.run_at
    assert q.members("pending") == []


def test_enqueue_validates_the_whole_batch_before_writing(q):
    good = spec("good")
    q.fails(ValidationError, q.at().enqueue([good, spec("bad", priority=10)], max_payload=MAX_PAYLOAD), "priority")
    q.fails(PayloadTooLarge, q.at().enqueue([good, spec("big", args=("x" * 200,))], max_payload=100), "^206$")
    assert q.states() == {}


def test_enqueue_sent_again_is_idempotent_per_task_id(q, r):
    # A client library may resend a call whose reply was lost: the retry must not fail or duplicate.
    call = q.at().enqueue([spec("a"), spec("b")], max_payload=MAX_PAYLOAD)
    first = q.run(call)
    before = snapshot(r)
    again = q.run(call)
    assert [(e.id, e.created) for e in again] == [(e.id, e.created) for e in first] == [("a", True), ("b", True)]
    assert snapshot(r) == before


def test_enqueue_too_large_counts_args_and_kwargs(q):
    size = len(orjson.dumps(["x" * 40])) + len(orjson.dumps({"k": "y" * 40}))
    payload = {"args": ("x" * 40,), "kwargs": {"k": "y" * 40}}
    exc = q.fails(PayloadTooLarge, q.at().enqueue([spec(**payload)], max_payload=size - 1))
    assert str(exc) == str(size)
    q.run(q.at().enqueue([spec(**payload)], max_payload=size))


def test_enqueue_with_a_held_key_returns_the_first_task(q, r):
    [first] = q.add(key="order-1")
    replies = q.run(q.at().enqueue([spec(key="order-1"), spec(key="order-1")], max_payload=MAX_PAYLOAD))
    assert [(e.id, e.created) for e in replies] == [(first, False), (first, False)]
    assert list(q.states()) == [first]
    assert r.get(q.keys.idempotency("order-1")) == first.encode()
    assert q.stats()["enqueued"] == 1


def test_enqueue_ignores_a_unique_key_left_pointing_at_a_finished_task(q, r):
    [first] = q.add(unique_key="k")
    [lease] = q.claim()
    q.run(q.at().complete(first, lease.token, b"1", 0))
    r.set(q.keys.unique("k"), first)  # as if the key had outlived its task
    call = q.at().enqueue([spec(unique_key="k")], max_payload=MAX_PAYLOAD)
    [(second, created)] = [(e.id, e.created) for e in q.run(call)]
    assert created and second != first
    assert r.get(q.keys.unique("k")) == second.encode()


def test_enqueue_one_key_twice_in_one_batch_creates_one_task(q):
    replies = q.run(q.at().enqueue([spec("a", key="k"), spec("b", key="k")], max_payload=MAX_PAYLOAD))
    assert [(e.id, e.created) for e in replies] == [("a", True), ("a", False)]
    assert q.states() == {"a": S.PENDING}


# ----------------------------------------------------------------------- claim


def test_claim_returns_payloads_and_fresh_increasing_tokens(q, r):
    q.run(
        q.at().enqueue(
            [
                spec("a", name="m:f", priority=4, args=(1, [2]), kwargs={"x": None}, max_retries=2, timeout_ms=7000),
                spec("b"),
                spec("c"),
            ],
            max_payload=MAX_PAYLOAD,
        )
    )
    before = server_ms(r)
    first = q.claim(2, worker="w1", lease_ms=10_000)
    after = server_ms(r)
    a = first[0]
    assert (a.queue, a.task_id, a.name, a.args, a.kwargs) == ("default", "a", "m:f", [1, [2]], {"x": None})
    assert (a.attempt, a.max_retries, a.timeout_ms, a.priority) == (1, 2, 7000, 4)
    assert [lease.task_id for lease in first] == ["a", "b"]
    for lease in first:
        task = q.task(lease.task_id)
        assert (task.state, task.worker, task.token, task.attempts) == (S.RUNNING, "w1", lease.token, 1)
        assert before <= task.started_at <= after
        assert before + 10_000 <= q.score("running", lease.task_id) <= after + 10_000
    second = q.claim(5, worker="w2")
    assert [lease.task_id for lease in second] == ["c"]
    assert q.claim(5) == []
    tokens = [int(lease.token) for lease in first + second]
    assert tokens == sorted(set(tokens))  # unique and growing
    assert q.stats()["started"] == 3
    assert [e["event"] for e in q.events()].count("claimed") == 3


def test_claim_of_an_empty_queue_changes_nothing(q, r):
    before = snapshot(r)
    assert q.claim(10) == []
    assert snapshot(r) == before


def test_claim_leaves_a_wake_token_only_when_work_remains(q, r):
    q.add(3)
    r.delete(q.keys.wake)
    q.claim(2)
    assert r.llen(q.keys.wake) == 1
    r.delete(q.keys.wake)
    q.claim(2)
    assert r.llen(q.keys.wake) == 0


def test_claim_skips_stale_pending_entries(q, r):
    [a, b] = q.add(2)
    # A pending entry whose record is not PENDING (a crash or a manual edit) is dropped.
    r.hset(q.keys.task(a), "state", "CANCELLED")
    r.zrem(q.keys.pending, a)
    r.zadd(q.keys.done, {a: 1})
    r.zadd(q.keys.pending, {a: 0})
    leases = run(r, q.at().claim("w1", 5, 60_000))
    assert [lease.task_id for lease in leases] == [b]
    assert q.state(a) is S.CANCELLED
    assert q.members("pending") == []


# ------------------------------------------------------------------- heartbeat


def test_heartbeat_renews_worker_and_leases(q, r):
    [a, b] = q.add(2)
    leases = q.claim(2, lease_ms=1000)
    old = {lease.task_id: q.score("running", lease.task_id) for lease in leases}
    info = {"host": "h1", "pid": 42, "concurrency": 4, "running": 2, "load": 0.5}
    before = server_ms(r)
    reply = q.run(q.at(500).heartbeat("w1", 30_000, info, [(x.task_id, x.token) for x in leases]))
    assert (reply.lost, reply.cancel) == ([], [])
    assert before + 500 <= reply.now_ms <= server_ms(r) + 500
    for task_id in (a, b):
        assert q.score("running", task_id) == reply.now_ms + 30_000 > old[task_id]
    assert r.zscore(q.keys.workers, "w1") == reply.now_ms + 30_000
    whash = {k.decode(): v.decode() for k, v in r.hgetall(q.keys.worker("w1")).items()}
    assert whash == {"host": "h1", "pid": "42", "concurrency": "4", "running": "2", "load": "0.5",
                     "last_seen": str(reply.now_ms)}
    assert 0 < r.pttl(q.keys.worker("w1")) <= 4 * 30_000


def test_heartbeat_reports_lost_leases_and_renews_only_held_ones(q):
    [a, b] = q.add(2)
    leases = {x.task_id: x for x in q.claim(2, lease_ms=1000)}
    stale_score = q.score("running", b)
    reply = q.run(
        q.at().heartbeat("w1", 60_000, {}, [(a, leases[a].token), (b, "999"), ("no-such-task", "1")])
    )
    assert reply.lost == [b, "no-such-task"]
    assert q.score("running", b) == stale_score
    assert q.score("running", a) == reply.now_ms + 60_000


def test_heartbeat_reports_cancel_requests(q):
    [_, b] = q.add(2)
    leases = q.claim(2)
    assert q.run(q.at().cancel(b, 0)) is S.RUNNING
    reply = q.run(q.at().heartbeat("w1", 60_000, {}, [(x.task_id, x.token) for x in leases]))
    assert (reply.lost, reply.cancel) == ([], [b])


def test_cancel_of_a_running_task_publishes_its_id_for_the_worker(q, r):
    [waiting, running] = q.add(2)
    q.run(q.at().cancel(waiting, 0))  # PENDING: cancelled at once, nothing to tell a worker
    [lease] = q.claim()
    assert lease.task_id == running
    listener = r.pubsub(ignore_subscribe_messages=True)
    listener.subscribe(q.keys.cancels)
    try:
        assert listener.get_message(timeout=1) is None  # the subscribe confirmation, skipped
        assert q.run(q.at().cancel(running, 0)) is S.RUNNING
        message = listener.get_message(timeout=5)
        assert message is not None and (message["channel"], message["data"]) == (
            q.keys.cancels.encode(), running.encode()
        )
        assert listener.get_message(timeout=0.1) is None, "one message per cancel request"
    finally:
        listener.close()


def test_cancel_refuses_a_channel_outside_the_queue_base(q):
    [task_id] = q.add()
    q.claim()
    call = q.at().cancel(task_id, 0)
    escaped = Call(call.script, call.keys, (*call.args[:-1], "elsewhere"), call.decode)
    q.fails(ValidationError, escaped, "channel is not under the base")


def test_deregister_removes_the_worker_and_renews_nothing(q, r):
    [a] = q.add()
    [lease] = q.claim(lease_ms=1000)
    q.run(q.at().heartbeat("w1", 60_000, {"host": "h"}, []))
    score = q.score("running", a)
    reply = q.run(q.at().deregister("w1"))
    assert (reply.lost, reply.cancel) == ([], [])
    assert r.zscore(q.keys.workers, "w1") is None
    assert not r.exists(q.keys.worker("w1"))
    assert q.score("running", lease.task_id) == score


# ---------------------------------------------------------------------- complete


def test_complete_stores_the_result_and_retires_the_record(q, r):
    [task_id] = q.add(key="k1")
    [lease] = q.claim()
    before = server_ms(r)
    done_at = q.run(q.at().complete(task_id, lease.token, b'{"ok":[1,2]}', 60_000))
    assert before <= done_at <= server_ms(r)
    task = q.task(task_id)
    assert (task.state, task.result, task.completed_at) == (S.SUCCESS, {"ok": [1, 2]}, done_at)
    assert q.score("done", task_id) == done_at
    assert 0 < r.pttl(q.keys.task(task_id)) <= 60_000
    assert not r.exists(q.keys.unique("k1"))
    stats = q.stats()
    assert (stats["succeeded"], stats["runs"]) == (1, 1)
    assert q.events()[-1]["event"] == "succeeded"


def test_complete_with_ttl_zero_keeps_the_record(q, r):
    [task_id] = q.add()
    [lease] = q.claim()
    q.run(q.at().complete(task_id, lease.token, b"null", 0))
    assert r.pttl(q.keys.task(task_id)) == -1


def test_complete_and_fail_with_a_stale_token_change_nothing(q):
    [task_id] = q.add()
    [lease] = q.claim()
    stale = str(int(lease.token) + 1)
    q.fails(LeaseLost, q.at().complete(task_id, stale, b"1", 0), task_id)
    q.fails(LeaseLost, q.at().fail(task_id, stale, ERROR), task_id)
    q.fails(LeaseLost, q.at().fail(task_id, "", ERROR, mode="cancelled"))
    q.run(q.at().complete(task_id, lease.token, b"1", 0))
    # only once; under its own token this reads as a resend of the call that landed: not late
    q.fails(LeaseLost, q.at().complete(task_id, lease.token, b"2", 0), late=0)
    q.fails(LeaseLost, q.at().fail(task_id, lease.token, ERROR))
    assert q.task(task_id).result == 1


def test_complete_of_a_pending_task_is_lease_lost(q):
    [task_id] = q.add()
    q.fails(LeaseLost, q.at().complete(task_id, "1", b"1", 0))


# -------------------------------------------------------------------------- fail


def test_fail_retries_with_exponential_backoff_then_dead_letters(q, r):
    [task_id] = q.add(max_retries=4, backoff_ms=1000, backoff_max_ms=5000, jitter=True)
    for attempt, full in enumerate([1000, 2000, 4000, 5000], start=1):
        [lease] = q.claim()
        assert lease.attempt == attempt
        error = orjson.dumps({"type": "E", "message": f"attempt {attempt}", "traceback": ""})
        before = server_ms(r)
        reply = q.run(q.at().fail(task_id, lease.token, error, seed=attempt))
        after = server_ms(r)
        assert reply.state is S.RETRYING
        assert before + full // 2 <= reply.run_at <= after + full
        task = q.task(task_id)
        assert (task.state, task.run_at, task.worker, task.attempts) == (S.RETRYING, reply.run_at, None, attempt)
        assert task.error.message == f"attempt {attempt}"
        assert q.score("retrying", task_id) == reply.run_at and q.members("scheduled") == []
        assert q.run(q.at(60_000).promote(10)).moved == 1
    [lease] = q.claim()
    assert lease.attempt == 5
    before = server_ms(r)
    reply = q.run(q.at().fail(task_id, lease.token, ERROR))
    assert reply == FailReply(S.FAILED, None)
    task = q.task(task_id)
    assert (task.state, task.attempts) == (S.FAILED, 5)
    assert task.error.model_dump() == orjson.loads(ERROR)
    assert before <= task.completed_at == q.score("failed", task_id)
    stats = q.stats()
    assert (stats["retried"], stats["failed"], stats["runs"]) == (4, 1, 5)
    assert [e["event"] for e in q.events() if e["event"] in ("retrying", "failed")] == ["retrying"] * 4 + ["failed"]


def test_fail_without_jitter_waits_the_full_backoff(q, r):
    [task_id] = q.add(max_retries=1, backoff_ms=1500, jitter=False)
    [lease] = q.claim()
    before = server_ms(r)
    reply = q.run(q.at().fail(task_id, lease.token, ERROR))
    assert before + 1500 <= reply.run_at <= server_ms(r) + 1500


def test_fail_jitter_spreads_retries(q, r):
    q.add(8, backoff_ms=100_000, backoff_max_ms=100_000, jitter=True)
    leases = q.claim(8)
    now = server_ms(r)
    delays = [q.run(q.at().fail(x.task_id, x.token, ERROR, seed=i)).run_at - now for i, x in enumerate(leases)]
    assert all(49_000 <= d <= 101_000 for d in delays)
    assert max(delays) - min(delays) > 1000


def test_fail_fatal_fails_with_attempts_left(q):
    [task_id] = q.add(max_retries=5, key="k")
    [lease] = q.claim()
    assert q.run(q.at().fail(task_id, lease.token, ERROR, mode="fatal")) == FailReply(S.FAILED, None)
    assert q.task(task_id).attempts == 1
    assert q.members("failed") == [task_id]
    assert not q.r.exists(q.keys.unique("k"))


def test_fail_cancelled_ends_cancelled(q, r):
    [task_id] = q.add(max_retries=5, key="k")
    [lease] = q.claim()
    q.run(q.at().cancel(task_id, 0))
    reply = q.run(q.at().fail(task_id, lease.token, ERROR, mode="cancelled", ttl_ms=60_000))
    assert reply == FailReply(S.CANCELLED, None)
    task = q.task(task_id)
    assert task.state is S.CANCELLED and task.completed_at is not None
    assert q.members("cancelled") == [task_id] and q.members("done") == []
    assert 0 < r.pttl(q.keys.task(task_id)) <= 60_000
    assert not r.exists(q.keys.unique("k"))
    assert q.stats()["cancelled"] == 1


# ----------------------------------------------------------------------- release


def test_release_returns_tasks_to_their_place_without_counting_the_attempt(q, r):
    [a, b, c] = q.add(3)
    [lease] = q.claim()
    assert lease.task_id == a
    [d] = q.add()
    assert q.run(q.at().release([(a, lease.token)])) == [a]
    task = q.task(a)
    assert (task.state, task.attempts, task.worker) == (S.PENDING, 0, None)
    assert q.members("pending") == [a, b, c, d]
    again = q.claim(4)
    assert [x.task_id for x in again] == [a, b, c, d]
    assert again[0].attempt == 1
    assert int(again[0].token) > int(lease.token)
    q.fails(LeaseLost, q.at().complete(a, lease.token, b"1", 0))
    assert q.stats()["released"] == 1


def test_release_skips_stale_tokens(q, r):
    [a, b] = q.add(2)
    leases = q.claim(2)
    before = snapshot(r)
    assert q.run(q.at().release([(a, "999"), ("ghost", "1")])) == []
    assert snapshot(r) == before
    assert q.run(q.at().release([(a, "999"), (b, leases[1].token)])) == [b]
    assert q.state(a) is S.RUNNING


# ----------------------------------------------------------------------- promote


def test_promote_moves_only_due_tasks_bounded_with_more(q, r):
    [ready] = q.add()
    [soon] = q.add(delay_ms=1000)
    [later] = q.add(delay_ms=2000)
    [far] = q.add(delay_ms=3_600_000)
    before = snapshot(r)
    assert q.run(q.at().promote(10)) == PromoteReply(0, False)
    assert snapshot(r) == before
    assert q.run(q.at(5000).promote(1)) == PromoteReply(1, True)
    assert q.members("pending") == [ready, soon]
    assert q.run(q.at(5000).promote(10)) == PromoteReply(1, False)
    assert q.members("pending") == [ready, soon, later]  # promoted to the back of their level
    assert q.state(far) is S.SCHEDULED and q.members("scheduled") == [far]
    assert q.stats()["promoted"] == 2


def test_promote_reports_more_when_exactly_limit_plus_one_are_due(q):
    q.add(3, delay_ms=1000)
    assert q.run(q.at(5000).promote(2)) == PromoteReply(2, True)
    assert q.run(q.at(5000).promote(1)) == PromoteReply(1, False)


def test_promote_respects_priority(q):
    [low] = q.add(priority=9)
    [urgent] = q.add(priority=0, delay_ms=1000)
    q.run(q.at(5000).promote(10))
    assert [x.task_id for x in q.claim(2)] == [urgent, low]


# -------------------------------------------------------------------------- reap


def test_reap_counts_the_attempt_and_retries_then_fails(q, r):
    ids = q.add(3, max_retries=1, backoff_ms=100)
    q.claim(3, worker="w1", lease_ms=1000)
    hb = q.run(q.at().heartbeat("w1", 1000, {"host": "h"}, []))
    q.run(q.at().heartbeat("w2", 3_600_000, {"host": "h"}, []))  # alive
    before = snapshot(r)
    assert q.run(q.at().reap(100)).tasks == []  # nothing expired yet
    assert snapshot(r) == before

    first = q.run(q.at(5000).reap(2))
    assert first.more is True
    assert first.dead_workers == [("w1", hb.now_ms)]
    second = q.run(q.at(5000).reap(2))
    assert (len(first.tasks), len(second.tasks), second.dead_workers, second.more) == (2, 1, [], False)
    assert sorted(first.tasks + second.tasks, key=str) == sorted(
        (Reaped(task_id, "w1", S.RETRYING) for task_id in ids), key=str
    )
    assert [m.decode() for m in r.zrange(q.keys.workers, 0, -1)] == ["w2"]
    assert not r.exists(q.keys.worker("w1"))
    for task_id in ids:
        task = q.task(task_id)
        assert (task.state, task.attempts, task.worker) == (S.RETRYING, 1, None)
        assert task.error.type == "LeaseExpired" and "w1" in task.error.message

    assert q.run(q.at(60_000).promote(10)).moved == 3
    q.claim(3, worker="w3", lease_ms=1000)
    third = q.run(q.at(5000).reap(10))
    assert sorted(third.tasks, key=str) == sorted((Reaped(task_id, "w3", S.FAILED) for task_id in ids), key=str)
    assert (third.dead_workers, third.more) == ([], False)
    assert sorted(q.members("failed")) == sorted(ids)
    assert all(q.task(i).attempts == 2 for i in ids)
    stats = q.stats()
    assert (stats["reaped"], stats["retried"], stats["failed"]) == (6, 3, 3)
    assert [e["event"] for e in q.events()].count("reaped") == 6
    assert [e["event"] for e in q.events()].count("worker_lost") == 1


def test_reap_spares_renewed_leases(q):
    [a, b] = q.add(2)
    leases = q.claim(2, lease_ms=1000)
    q.run(q.at(3000).heartbeat("w1", 60_000, {}, [(a, leases[0].token)]))
    reply = q.run(q.at(5000).reap(10))
    assert [x.task_id for x in reply.tasks] == [b]
    assert q.state(a) is S.RUNNING


def test_reap_bounds_dead_workers_too(q, r):
    for i in range(5):
        q.run(q.at().heartbeat(f"w{i}", 1000, {}, []))
    assert len(q.run(q.at(5000).reap(3)).dead_workers) == 3
    assert len(q.run(q.at(5000).reap(3)).dead_workers) == 2
    assert r.zcard(q.keys.workers) == 0


def test_late_complete_after_reap_and_reclaim_is_rejected(q):
    [task_id] = q.add(max_retries=2, backoff_ms=100)
    [old] = q.claim(worker="w1", lease_ms=1000)
    assert q.run(q.at(5000).reap(10)).tasks == [Reaped(task_id, "w1", S.RETRYING)]
    # Late, while it waits to be retried:
    q.fails(LeaseLost, q.at().complete(task_id, old.token, b'"stale"', 0))
    q.run(q.at(60_000).promote(10))
    [new] = q.claim(worker="w2")
    assert (new.attempt, int(new.token) > int(old.token)) == (2, True)
    # Late, while the newer attempt runs:
    q.fails(LeaseLost, q.at().complete(task_id, old.token, b'"stale"', 0))
    q.fails(LeaseLost, q.at().fail(task_id, old.token, ERROR))
    assert q.run(q.at().release([(task_id, old.token)])) == []
    hb = q.run(q.at().heartbeat("w1", 60_000, {}, [(task_id, old.token)]))
    assert hb.lost == [task_id]
    q.run(q.at().complete(task_id, new.token, b'"fresh"', 0))
    # Late, after the newer attempt finished:
    q.fails(LeaseLost, q.at().complete(task_id, old.token, b'"stale"', 0))
    task = q.task(task_id)
    assert (task.state, task.result, task.worker, task.attempts) == (S.SUCCESS, "fresh", "w2", 2)


# ------------------------------------------------------------------------ cancel


def _retrying(q: Q, **over) -> str:
    [task_id] = q.add(max_retries=3, **over)
    [lease] = q.claim()
    q.run(q.at().fail(task_id, lease.token, ERROR))
    return task_id


@pytest.mark.parametrize("make", ["pending", "scheduled", "retrying"])
def test_cancel_waiting_tasks_at_once(q, r, make):
    if make == "pending":
        [task_id] = q.add(key="k")
    elif make == "scheduled":
        [task_id] = q.add(delay_ms=60_000, key="k")
    else:
        task_id = _retrying(q, key="k")
    assert q.run(q.at().cancel(task_id, 60_000)) is S.CANCELLED
    task = q.task(task_id)
    assert task.state is S.CANCELLED and task.completed_at is not None
    assert q.members("cancelled") == [task_id]
    assert q.members("pending") == q.members("scheduled") == q.members("retrying") == q.members("done") == []
    assert not r.exists(q.keys.unique("k"))
    assert 0 < r.pttl(q.keys.task(task_id)) <= 60_000
    assert q.events()[-1] == {"event": "cancelled", "task": task_id, "from": make.upper()}
    assert q.claim(1) == []
    assert q.run(q.at(3_600_000).promote(10)).moved == 0


def test_cancel_running_only_flags_it(q):
    [task_id] = q.add()
    [lease] = q.claim()
    assert q.run(q.at().cancel(task_id, 0)) is S.RUNNING
    task = q.task(task_id)
    assert (task.state, task.cancel_requested) == (S.RUNNING, True)
    assert q.members("running") == [task_id]
    assert q.events()[-1] == {"event": "cancel_requested", "task": task_id}
    # The worker may still finish it (its result stands) ...
    q.run(q.at().complete(task_id, lease.token, b"1", 0))
    assert q.state(task_id) is S.SUCCESS


@pytest.mark.parametrize("final", ["SUCCESS", "FAILED", "CANCELLED"])
def test_cancel_of_a_final_task_is_bad_state(q, final):
    if final == "FAILED":
        task_id = q.fail_to_dead_letter()
    else:
        [task_id] = q.add()
        if final == "SUCCESS":
            [lease] = q.claim()
            q.run(q.at().complete(task_id, lease.token, b"1", 0))
        else:
            q.run(q.at().cancel(task_id, 0))
    q.fails(InvalidTransition, q.at().cancel(task_id, 0), final)


def test_cancel_unknown_task_is_not_found(q):
    q.add()
    q.fails(TaskNotFound, q.at().cancel("ghost", 0), "ghost")


# ------------------------------------------------------------------------- pause


def test_a_paused_queue_claims_nothing_and_resume_wakes_a_worker(q, r):
    [a, b] = q.add(2)
    assert q.run(q.at().pause(True)) is True
    assert r.exists(q.keys.paused) and q.events()[-1] == {"event": "paused"}
    before = snapshot(r)
    assert q.claim(5) == []
    assert snapshot(r) == before, "a claim of a paused queue wrote something"
    [c] = q.add()  # enqueue goes on
    before = snapshot(r)
    assert q.run(q.at().pause(True)) is False
    assert snapshot(r) == before, "pausing a paused queue wrote something"
    r.delete(q.keys.wake)
    assert q.run(q.at().pause(False)) is True
    assert not r.exists(q.keys.paused) and r.llen(q.keys.wake) == 1
    assert q.events()[-1] == {"event": "resumed"}
    assert [x.task_id for x in q.claim(5)] == [a, b, c]
    before = snapshot(r)
    assert q.run(q.at().pause(False)) is False
    assert snapshot(r) == before


def test_pause_lets_running_tasks_finish(q):
    [a] = q.add()
    [lease] = q.claim()
    q.run(q.at().pause(True))
    q.run(q.at().complete(a, lease.token, b"1", 0))
    assert q.state(a) is S.SUCCESS


def test_pause_refuses_a_flag_that_is_not_0_or_1(q):
    call = q.at().pause(True)
    q.fails(ValidationError, Call(call.script, call.keys, (*call.args[:-1], "yes"), call.decode), "on")


# ------------------------------------------------------------------ run_now, delete


@pytest.mark.parametrize("make", ["scheduled", "retrying"])
def test_run_now_makes_a_waiting_task_pending_at_once(q, r, make):
    task_id = q.add(delay_ms=3_600_000, priority=3)[0] if make == "scheduled" else _retrying(q, priority=3)
    [first] = q.add(priority=3)
    run_at = q.task(task_id).run_at
    r.delete(q.keys.wake)
    before = server_ms(r)
    assert q.run(q.at().run_now(task_id)) is S(make.upper())
    task = q.task(task_id)
    assert (task.state, task.run_at) == (S.PENDING, run_at) and before <= task.ready_at <= server_ms(r)
    assert q.members("scheduled") == q.members("retrying") == [] and r.llen(q.keys.wake) == 1
    assert q.events()[-1] == {"event": "promoted", "task": task_id, "from": make.upper(), "by": "run_now"}
    assert q.stats()["promoted"] == 1
    assert [x.task_id for x in q.claim(2)] == [first, task_id]  # behind the task already pending at its level


@pytest.mark.parametrize("state", ["PENDING", "RUNNING", "SUCCESS", "FAILED", "CANCELLED"])
def test_run_now_refuses_every_other_state_and_changes_nothing(q, state):
    task_id = _in_state(q, state)
    exc = q.fails(InvalidTransition, q.at().run_now(task_id), state)
    assert exc.state == state


def test_run_now_refuses_a_ghost_and_a_malformed_record(q, r):
    q.fails(TaskNotFound, q.at().run_now("ghost"), "ghost")
    [task_id] = q.add(delay_ms=60_000)
    r.hdel(q.keys.task(task_id), "name")
    q.fails(MalformedRecord, q.at().run_now(task_id), "field name is missing")


@pytest.mark.parametrize("state", ["PENDING", "SCHEDULED", "RETRYING", "SUCCESS", "FAILED", "CANCELLED"])
def test_delete_removes_the_record_its_entry_and_its_keys(q, r, state):
    task_id = _in_state(q, state, key="k", unique_key="u")
    [bystander] = q.add()
    assert q.run(q.at().delete(task_id)) is S(state)
    assert not r.exists(q.keys.task(task_id))
    assert not r.exists(q.keys.idempotency("k")) and not r.exists(q.keys.unique("u"))
    assert q.states() == {bystander: S.PENDING}
    assert q.events()[-1] == {"event": "deleted", "task": task_id, "state": state}
    assert q.stats()["deleted"] == 1


def test_delete_leaves_keys_that_name_another_task(q, r):
    [task_id] = q.add(unique_key="u")
    q.run(q.at().cancel(task_id, 0))
    [newer] = q.add(unique_key="u")  # the key is free again once the first was cancelled
    q.run(q.at().delete(task_id))
    assert r.get(q.keys.unique("u")) == newer.encode()


def test_delete_refuses_a_running_task_and_a_ghost(q):
    task_id = _in_state(q, "RUNNING")
    q.fails(InvalidTransition, q.at().delete(task_id), "RUNNING")
    q.fails(TaskNotFound, q.at().delete("ghost"), "ghost")


def _in_state(q: Q, state: str, **over) -> str:
    """A task brought to ``state`` by the scripts."""
    if state == "SCHEDULED":
        return q.add(delay_ms=60_000, **over)[0]
    if state == "RETRYING":
        return _retrying(q, **over)
    if state == "FAILED":
        return q.fail_to_dead_letter(**over)
    [task_id] = q.add(**over)
    if state == "CANCELLED":
        q.run(q.at().cancel(task_id, 0))
    elif state in ("RUNNING", "SUCCESS"):
        [lease] = q.claim()
        if state == "SUCCESS":
            q.run(q.at().complete(task_id, lease.token, b"1", 0))
    return task_id


# ---------------------------------------------------------------------- history


def history(q: Q, task_id: str) -> list[dict]:
    return orjson.loads(q.r.hget(q.keys.task(task_id), "history") or b"[]")


def test_every_attempt_end_joins_the_history(q, r):
    [task_id] = q.add(max_retries=5, backoff_ms=0)
    tokens = []
    before = server_ms(r)
    [lease] = q.claim(worker="w1")  # 1: released (graceful shutdown)
    tokens.append(lease.token)
    q.run(q.at().release([(task_id, lease.token)]))
    [lease] = q.claim(worker="w2", lease_ms=1000)  # 2: reaped, retried
    tokens.append(lease.token)
    q.run(q.at(5000).reap(10))
    q.run(q.at(60_000).promote(10))
    [lease] = q.claim(worker="w3")  # 3: failed, retried
    tokens.append(lease.token)
    long = orjson.dumps({"type": "ValueError", "message": "é" * 150 + "\nsecond line", "traceback": "..."})
    q.run(q.at().fail(task_id, lease.token, long))
    q.run(q.at(60_000).promote(10))
    [lease] = q.claim(worker="w4")  # 4: succeeded
    tokens.append(lease.token)
    q.run(q.at().complete(task_id, lease.token, b"1", 0))
    after = server_ms(r) + 60_000
    got = history(q, task_id)  # stored: the attempts the record's own fields no longer tell
    assert [(e["outcome"], e["worker"], e["token"]) for e in got] == [
        ("released", "w1", tokens[0]), ("retried", "w2", tokens[1]), ("retried", "w3", tokens[2]),
    ]
    assert [e["error"] for e in got][:2] == ["", "lease expired"]
    info = decode_task("default", task_id, r.hgetall(q.keys.task(task_id)))  # and the last one, told by them
    assert [(a.outcome, a.worker, a.token, a.error) for a in info.history][-1] == ("succeeded", "w4", tokens[3], "")
    assert len(info.history) == 4 and info.history[-1].ended_at == info.completed_at
    line = got[2]["error"]
    assert line.startswith("ValueError: éé") and "second" not in line and len(line.encode()) <= 200
    for e in got:
        assert isinstance(e["started_at"], int) and isinstance(e["ended_at"], int)
        assert before <= e["started_at"] <= e["ended_at"] <= after


@pytest.mark.fakeredis_limit(NO_OBJECT_ENCODING)
def test_a_first_success_stores_no_history_and_its_record_stays_small(q, r):
    [task_id] = q.add()
    [lease] = q.claim()
    q.run(q.at().complete(task_id, lease.token, b"1", 60_000))
    assert r.hget(q.keys.task(task_id), "history") is None
    assert r.object("encoding", q.keys.task(task_id)) == b"listpack"


def test_retry_failed_stores_the_failed_attempt(q, r):
    task_id = q.fail_to_dead_letter()
    assert history(q, task_id) == []  # told by the FAILED record itself
    info = decode_task("default", task_id, r.hgetall(q.keys.task(task_id)))
    [attempt] = info.history
    assert (attempt.outcome, attempt.error, attempt.ended_at) == ("failed", "ValueError: boom", info.completed_at)
    q.run(q.at().retry_failed([task_id]))
    [stored] = history(q, task_id)
    assert (stored["outcome"], stored["worker"], stored["error"]) == ("failed", "w1", "ValueError: boom")
    [lease] = q.claim(worker="w2")
    q.run(q.at().complete(task_id, lease.token, b"1", 0))
    info = decode_task("default", task_id, r.hgetall(q.keys.task(task_id)))
    assert [(a.outcome, a.worker) for a in info.history] == [("failed", "w1"), ("succeeded", "w2")]


def test_the_history_keeps_the_last_ten_attempts_and_survives_garbage(q, r):
    [task_id] = q.add()
    r.hset(q.keys.task(task_id), "history", "not json")
    for _ in range(12):
        [lease] = q.claim()
        q.run(q.at().release([(task_id, lease.token)]))
    got = history(q, task_id)
    assert len(got) == 10 and all(e["outcome"] == "released" for e in got)
    [lease] = q.claim()
    q.run(q.at().cancel(task_id, 0))
    q.run(q.at().fail(task_id, lease.token, ERROR, mode="cancelled"))
    assert [e["outcome"] for e in history(q, task_id)][-2:] == ["released", "cancelled"]
    assert history(q, task_id)[-1]["error"] == "ValueError: boom"


# ------------------------------------------------------------------ retry_failed


def test_retry_failed_by_id(q):
    a = q.fail_to_dead_letter()
    b = q.fail_to_dead_letter()
    assert q.run(q.at().retry_failed([b])) == [b]
    task = q.task(b)
    assert (task.state, task.attempts, task.completed_at) == (S.PENDING, 0, None)
    assert q.members("failed") == [a]
    [lease] = q.claim()
    assert (lease.task_id, lease.attempt) == (b, 1)
    assert q.stats()["requeued"] == 1


def test_retry_failed_all_oldest_first_bounded(q):
    ids = [q.fail_to_dead_letter() for _ in range(3)]
    assert q.run(q.at().retry_failed(limit=2)) == ids[:2]
    assert q.run(q.at().retry_failed(limit=2)) == ids[2:]
    assert q.run(q.at().retry_failed(limit=2)) == []
    assert [x.task_id for x in q.claim(3)] == ids


def test_retry_failed_checks_every_id_before_moving_any(q):
    dead = q.fail_to_dead_letter()
    [waiting] = q.add()
    q.fails(InvalidTransition, q.at().retry_failed([dead, waiting]), f"{waiting} PENDING")
    q.fails(TaskNotFound, q.at().retry_failed([dead, "ghost"]), "ghost")
    assert q.state(dead) is S.FAILED


# ------------------------------------------------------------------------- purge


@pytest.mark.parametrize("index", ["pending", "scheduled", "failed", "done"])
def test_purge_deletes_records_and_keys_in_batches(q, r, index):
    delay = 60_000 if index == "scheduled" else 0
    ids = [f"t{i}" for i in range(5)]
    specs = [spec(t, key=f"key-{t}", unique_key=f"u-{t}", delay_ms=delay, max_retries=0) for t in ids]
    q.run(q.at().enqueue(specs, max_payload=MAX_PAYLOAD))
    [bystander] = q.add(delay_ms=0 if index != "pending" else 60_000)
    if index in ("failed", "done"):
        for lease in q.claim(5):
            if index == "failed":
                q.run(q.at().fail(lease.task_id, lease.token, ERROR))
            else:
                q.run(q.at().complete(lease.task_id, lease.token, b"1", 0))
    held = [r.exists(q.keys.unique(f"u-{task_id}")) for task_id in ids]
    assert held == [index in ("pending", "scheduled")] * 5  # final states released theirs already
    assert all(r.exists(q.keys.idempotency(f"key-{task_id}")) for task_id in ids)  # kept with the record
    key = getattr(q.keys, index)
    assert q.run(q.at().purge(key, 2)) == 2
    assert q.run(q.at().purge(key, 10)) == 3
    assert q.run(q.at().purge(key, 10)) == 0
    assert q.states() == {bystander: q.state(bystander)}
    for task_id in ids:
        assert not r.exists(q.keys.unique(f"u-{task_id}")) and not r.exists(q.keys.idempotency(f"key-{task_id}"))
    assert q.stats()["purged"] == 5


def test_purge_never_deletes_a_running_record(q, r):
    [task_id] = q.add()
    [lease] = q.claim()
    r.zadd(q.keys.pending, {task_id: 0})  # a stray entry pointing at a running task
    assert run(r, q.at().purge(q.keys.pending, 10)) == 1
    assert q.state(task_id) is S.RUNNING
    q.run(q.at().complete(task_id, lease.token, b"1", 0))


# ----------------------------------------------------------------- bad input


BAD_CALLS = {
    "enqueue priority": lambda t: t.enqueue([spec(priority=10)], max_payload=MAX_PAYLOAD),
    "enqueue name": lambda t: t.enqueue([spec(name="")], max_payload=MAX_PAYLOAD),
    "enqueue number": lambda t: t.enqueue([spec(max_retries=-1)], max_payload=MAX_PAYLOAD),
    "enqueue none": lambda t: t.enqueue([], max_payload=MAX_PAYLOAD),
    "claim n": lambda t: t.claim("w1", 0, 1000),
    "claim lease": lambda t: t.claim("w1", 1, 0),
    "claim worker": lambda t: t.claim("", 1, 1000),
    "heartbeat worker": lambda t: t.heartbeat("", 1000, {}, []),
    "heartbeat lease": lambda t: t.heartbeat("w1", -1, {}, []),
    "complete ttl": lambda t: t.complete("t", "1", b"1", -1),
    "fail mode": lambda t: t.fail("t", "1", ERROR, mode="later"),
    "fail seed": lambda t: t.fail("t", "1", ERROR, seed=-5),
    "promote limit": lambda t: t.promote(0),
    "reap limit": lambda t: t.reap(0),
    "cancel ttl": lambda t: t.cancel("t", -1),
    "retry_failed limit": lambda t: t.retry_failed(limit=0),
    "purge limit": lambda t: t.purge(t.keys.pending, 0),
}


@pytest.mark.parametrize("what", sorted(BAD_CALLS))
def test_invalid_arguments_change_nothing(q, what):
    [task_id] = q.add(id="t")
    q.claim()
    q.add(2)
    q.fails(ValidationError, BAD_CALLS[what](q.at()))
    assert q.state(task_id) is S.RUNNING


def test_invalid_is_the_generic_validation_error(q):
    exc = q.fails(ValidationError, q.at().claim("w1", 0, 1000))
    assert type(exc) is ValidationError


@pytest.mark.parametrize("call", ["complete", "fail", "cancel", "retry_failed"])
def test_unknown_task_is_not_found(q, call):
    q.add()
    t = q.at()
    calls = {
        "complete": t.complete("ghost", "1", b"1", 0),
        "fail": t.fail("ghost", "1", ERROR),
        "cancel": t.cancel("ghost", 0),
        "retry_failed": t.retry_failed(["ghost"]),
    }
    q.fails(TaskNotFound, calls[call], "ghost")


# -------------------------------------------------------------- the lifecycle


def test_scripts_walk_every_edge_of_the_lifecycle_and_no_other(q):
    t = q.at()
    # PENDING -> RUNNING -> SUCCESS
    [a] = q.add()
    [lease] = q.claim()
    q.run(t.complete(a, lease.token, b"1", 0))
    # PENDING -> RUNNING -> PENDING (release) -> CANCELLED
    [b] = q.add()
    [lease] = q.claim()
    q.run(t.release([(b, lease.token)]))
    q.run(t.cancel(b, 0))
    # RUNNING -> RETRYING -> CANCELLED
    q.run(t.cancel(_retrying(q), 0))
    # RUNNING -> RETRYING -> PENDING -> RUNNING -> FAILED -> PENDING
    c = _retrying(q)
    q.run(q.at(3_600_000).promote(10))
    [lease] = q.claim()
    q.run(t.fail(c, lease.token, ERROR, mode="fatal"))
    q.run(t.retry_failed([c]))
    # SCHEDULED -> PENDING, SCHEDULED -> CANCELLED
    [d, e] = q.add(2, delay_ms=1000)
    q.run(t.cancel(e, 0))
    q.run(q.at(5000).promote(10))
    # RUNNING -> CANCELLED (the worker stops it)
    [lease, *_] = q.claim(5)
    q.run(t.cancel(lease.task_id, 0))
    q.run(t.fail(lease.task_id, lease.token, ERROR, mode="cancelled"))
    assert q.state(d) is S.RUNNING
    assert q.seen == {(old, new) for old, targets in TRANSITIONS.items() for new in targets}


# ----------------------------------------------------------------- plumbing


def test_scripts_reload_after_the_cache_is_flushed(q, r):
    q.add()
    r.script_flush()
    assert len(q.claim()) == 1


def test_events_can_be_turned_off(q, r):
    q.run(q.at(events_maxlen=0).enqueue([spec()], max_payload=MAX_PAYLOAD))
    assert not r.exists(q.keys.events)


def test_event_stream_is_capped(q, r):
    t = q.at(events_maxlen=10)
    for _ in range(30):
        run(r, t.enqueue([spec() for _ in range(10)], max_payload=MAX_PAYLOAD))
    assert r.xlen(q.keys.events) < 300  # '~' trims whole stream nodes, so only roughly 10


# ------------------------------------------------- cancel requests meet reap and release


def test_reap_honours_a_cancel_request_instead_of_retrying(q):
    [task_id] = q.add(max_retries=5, unique_key="once")
    q.claim(lease_ms=1000)
    q.run(q.at().cancel(task_id, 0))
    reply = q.run(q.at(5000).reap(10, ttl_ms=60_000))
    assert reply.tasks == [Reaped(task_id, "w1", S.CANCELLED)]
    task = q.task(task_id)
    assert (task.state, task.error.type) == (S.CANCELLED, "LeaseExpired")
    assert q.members("cancelled") == [task_id] and q.members("retrying") == []
    assert q.r.pttl(q.keys.task(task_id)) > 0
    assert q.r.get(q.keys.unique("once")) is None  # the key is free again
    assert q.stats()["cancelled"] == 1


def test_release_honours_a_cancel_request_instead_of_requeueing(q):
    a, b = q.add(2)
    leases = q.claim(2)
    q.run(q.at().cancel(a, 0))
    released = q.run(q.at().release([(lease.task_id, lease.token) for lease in leases], ttl_ms=0))
    assert released == [b]
    assert q.state(a) is S.CANCELLED and q.state(b) is S.PENDING
    assert q.members("pending") == [b] and q.members("cancelled") == [a]
    assert q.events()[-2]["event"] == "cancelled"


def test_retry_failed_takes_back_a_free_unique_key(q):
    task_id = q.fail_to_dead_letter(unique_key="k")
    assert q.r.get(q.keys.unique("k")) is None  # released when it failed
    q.run(q.at().retry_failed([task_id]))
    assert q.r.get(q.keys.unique("k")) == task_id.encode()
    call = q.at().enqueue([spec(unique_key="k")], max_payload=MAX_PAYLOAD)
    [(again, created)] = [(e.id, e.created) for e in q.run(call)]
    assert (again, created) == (task_id, False)


def test_retry_failed_leaves_a_unique_key_held_by_another_unfinished_task(q):
    task_id = q.fail_to_dead_letter(unique_key="k")
    [newer] = q.add(unique_key="k")
    q.run(q.at().retry_failed([task_id]))
    assert q.r.get(q.keys.unique("k")) == newer.encode()


def test_enqueue_rejects_a_duplicate_id_within_one_batch(q):
    q.fails(ValidationError, q.at().enqueue([spec("same"), spec("same")], max_payload=MAX_PAYLOAD))


def test_heartbeat_rejects_a_field_count_past_the_arguments(q):
    call = q.at().heartbeat("w1", 1000, {"host": "h"}, [])
    bad = Call(call.script, call.keys, (*call.args[:5], 5, *call.args[6:]), call.decode)
    q.fails(ValidationError, bad)


def test_completions_trim_the_done_index_of_expired_records(q):
    old = q.add(50)
    for lease in q.claim(50):
        run(q.r, q.at().complete(lease.task_id, lease.token, b"1", 60_000))
    assert len(q.members("done")) == 50
    # Much later on the scripts' clock (the old records' minute long past), 300 completions
    # trim on the calls whose clock ends in a multiple of 16 ms, 64 entries at a time: the 50
    # old entries go. Each call is shifted 1 ms further (a fast machine may run all 300 inside
    # 16 ms, none of them on a multiple). Retentions are seconds of real time too: the test may
    # take seconds (fakeredis on a loaded machine took 3 s), and with 1 s the old records
    # expired for real in the middle of it.
    later = q.add(300)
    for i, lease in enumerate(q.claim(300)):
        run(q.r, q.at(100_000 + i).complete(lease.task_id, lease.token, b"1", 30_000))
    done = set(q.members("done"))
    assert done.isdisjoint(old) and done == set(later)
