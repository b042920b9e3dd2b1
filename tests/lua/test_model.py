"""Model-based test of the Lua scripts: random call sequences checked against a plain model.

A Hypothesis state machine drives enqueue, claim, heartbeat, complete, fail, release,
cancel, promote, reap, retry_failed, purge, pause and resume, run_now, delete, progress,
watch, periodic schedules (upsert, fire a tick by compare-and-set, a racing scheduler's
stale fire, overlap=skip, remove, pause and resume) and time passing against the real
redis-server; every reply is checked against what the model predicts, and after every
step the whole database is compared with the model (``ScriptsModel``): each task's
record, which index holds it and with what score, the pending order (priority, then
FIFO), lease tokens, the idempotency entries of both kinds (``key``: as long as the record;
``unique_key``: while unfinished) and their expiry, the worker registrations, the stats counters,
the event stream, the wake-up list, which records expire, and the metrics (counters per
label, histogram counts, per-minute series and their expiry). Refused calls must change
nothing, but for the one counter a LEASE_LOST refusal adds to (metrics field late).
Schedules: each schedule's record and index entry are checked against the model, and three
invariants hold whatever happened: a (schedule, tick) fires at most once (the ticks of the
tick events fired or caught up are strictly increasing per schedule), a removed or paused
schedule never fires (its fire changes nothing), and a schedule's last tick only grows.
Two rules go beyond the scripts' headers: a task asked to cancel is never retried again,
and a task an operator retries does not carry an old cancel request.
How often the done index is trimmed is the scripts' housekeeping: the model only checks
that nothing leaves it before its retention passed, oldest first.

Time: every call shifts the scripts' clock by ``clock_offset_ms`` = the model's clock.
Redis's own clock also moves while the test runs (a few ms per step), so every duration
the model uses is a whole number of UNITs plus half a UNIT, and time advances in whole
UNITs: a deadline is then always at least HALF away from "now" and the model knows
without doubt whether it passed. Timestamps are checked to lie between the model's time
and the model's time plus the real time elapsed since the example began. Where the
scripts' order depends on which of two calls came first within one millisecond (ties of
run-at, lease deadline or finish time), the model checks only what is certain: the right
number was taken and none taken is later than one left, then follows what Redis did.
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
import redis
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from orchestrator.errors import InvalidTransition, LeaseLost, MalformedRecord, TaskNotFound, ValidationError
from orchestrator.keys import QueueKeys
from orchestrator.metrics_records import OUTCOMES, SERIES_FIELDS, decode_metrics, decode_series
from orchestrator.models import INDEX_OF, INDEXES, RECORD, REQUIRED, RETAINED, TaskState
from orchestrator.schedules import tick_task_id
from orchestrator.script_calls import Call, run
from orchestrator.transitions import FireReply, TaskSpec, Transitions
from tests.lua.test_scripts import ERROR, spec
from tests.redis_server import late_count, snapshot, without_late

S = TaskState
UNIT = 60_000
HALF = UNIT // 2
TTL = 2 * UNIT + HALF  # retention when the example keeps records for a while (0: forever)
BIG_PAYLOAD = 1 << 20
SPAN = 10**13  # PRIORITY_SPAN of _lib.lua
IDEMPOTENCY_KEYS = ("", "", "k1", "k2", "k3")  # drawn for key= and for unique_key= alike
WORKERS = ("w1", "w2")
WAITING = (S.PENDING, S.SCHEDULED, S.RETRYING)
FINAL = (S.SUCCESS, S.FAILED, S.CANCELLED)

SCHEDULES = ("s1", "s2")
EVERIES = (UNIT, 2 * UNIT)  # a schedule's ticks: multiples of its every on the model clock

durations = st.sampled_from([HALF, UNIT + HALF, 2 * UNIT + HALF])
delays = st.sampled_from([0, 0, HALF, UNIT + HALF])
backoffs = st.sampled_from([0, HALF, UNIT + HALF])


@dataclass
class MTask:
    """What the model knows of one task; times are model ms (the clock offset)."""

    id: str
    priority: int
    max_retries: int
    backoff: int  # backoff_ms == backoff_max_ms, so every retry waits exactly this
    key: str
    unique_key: str
    state: S
    created: int
    run_at: int
    score: int  # the record's 'score' field: its place in the pending order
    attempts: int = 0
    token: str | None = None
    worker: str | None = None  # None: never claimed; '' blanked by a retry or failure
    started: int | None = None
    deadline: int | None = None  # score in running
    finished: int | None = None  # completed_at, and the score in failed / done
    finished_blank: bool = False  # completed_at was blanked by retry_failed
    in_done: bool = False  # final and still in the done index (not trimmed)
    has_ttl: bool = False
    cancel_requested: bool = False
    result: bytes | None = None
    error: dict[str, str] | None = None
    last_error: dict[str, str] | None = None  # a SUCCESS keeps its earlier attempt's error here
    malformed: bool = False  # its record lost its name (a required field) while PENDING
    outcomes: list[str] = field(default_factory=list)  # the stored history's outcomes (the last 10 kept)
    progress: tuple[str, str, int] | None = None  # the last report kept: fraction, data, model time (survives retries)
    waiting: bool = False  # watched (watch.lua): its end is published


@dataclass
class MWorker:
    deadline: int
    last_seen: int
    info: dict[str, str] = field(default_factory=dict)


@dataclass
class MSchedule:
    """What the model knows of one periodic schedule; times are model ms."""

    every: int
    priority: int
    since: int  # its first tick is after this (declared, its timing changed, resumed)
    created: int
    next_ms: int  # the record's next_ms (exact: the caller computes it)
    index: tuple[str, int]  # its score in the index: ("exact", ms) or ("near", model ms of a resume)
    last_tick: int | None = None
    paused: bool = False
    last_task: str | None = None
    counts: Counter[str] = field(default_factory=Counter)


MALFORMED = "field name is missing"  # why a script moves aside a record that lost its name


def encode_error(n: int) -> bytes:
    return orjson.dumps({"type": "E", "message": f"error {n}", "traceback": ""})


def lease_expired(holder: str, attempt: int) -> dict[str, str]:
    message = f"lease expired: worker {holder} stopped renewing it (attempt {attempt})"
    return {"type": "LeaseExpired", "message": message}


def earliest_first(taken: Iterable[str], candidates: dict[str, int], what: str) -> None:
    """``taken`` is a subset of ``candidates`` and nothing left out has a smaller key."""
    taken = set(taken)
    assert taken <= candidates.keys(), f"{what}: took {taken - candidates.keys()} that were not due"
    left = candidates.keys() - taken
    if taken and left:
        assert max(candidates[t] for t in taken) <= min(candidates[t] for t in left), (
            f"{what}: took {sorted(taken)} before earlier {sorted(left)}"
        )


class ScriptsModel(RuleBasedStateMachine):
    """The state machine; ``r`` is bound to the test's client by the test function."""

    r: redis.Redis

    def __init__(self) -> None:
        super().__init__()
        self.r.flushdb()
        self.k = QueueKeys("default")
        sec, usec = self.r.time()
        self.t0 = sec * 1000 + usec // 1000
        self.now = 0
        self.ttl = 0
        self.tasks: dict[str, MTask] = {}
        self.unique: dict[str, str] = {}  # unique_key -> task id, while that task is unfinished
        self.keyed: dict[str, str] = {}  # key -> task id, as long as that task's record exists
        self.workers: dict[str, MWorker] = {}
        self.stats: Counter[str] = Counter()
        # metrics hash counters; "wait": tasks claimed (wait buckets); "timed <outcome>": run buckets
        self.metrics: Counter[str] = Counter()
        self.tokens = 0  # the lease-token counter (its own key)
        self.runtime = 0  # sum of model run times; runtime_ms lies above it by the real time
        self.wake = False
        self.paused = False
        self.events: list[dict[str, str]] = []
        self.ids = itertools.count(1)
        self.errors = itertools.count(1)
        self.retires = 0  # retire() calls with a ttl during the current script call
        self.schedules: dict[str, MSchedule] = {}
        self.last_ticks: dict[str, int] = {}  # the last tick each live schedule's record showed

    # ------------------------------------------------------------------ plumbing

    @property
    def t(self) -> Transitions:
        return Transitions(self.k, clock_offset_ms=self.now)

    def send(self, call: Call[Any]) -> Any:
        return run(self.r, call)

    def refused(
        self, exc_type: type[Exception], call: Call[Any], match: str | None = None, *, late: int | None = None
    ) -> None:
        """The call raises ``exc_type`` and changes nothing at all, but the metrics field late
        (a LEASE_LOST refusal adds ``late``: 1 unless told)."""
        if late is None:
            late = 1 if exc_type is LeaseLost else 0
        before = snapshot(self.r)
        with pytest.raises(exc_type, match=match):
            run(self.r, call)
        after = snapshot(self.r)
        assert late_count(after, self.k.metrics) == late_count(before, self.k.metrics) + late, "late outcomes"
        assert without_late(after, self.k.metrics) == without_late(before, self.k.metrics), (
            f"{call.script.name} failed but changed the database"
        )
        self.metrics["late"] += late

    def outcome(self, state: S, timed: bool = False) -> None:
        """An attempt ended in ``state``: its outcome under the task's label (every task is m:f),
        in a run-time bucket when ``timed`` (complete, fail), else as a counter of its own."""
        name = {S.SUCCESS: "succeeded", S.RETRYING: "retried", S.FAILED: "failed", S.CANCELLED: "cancelled"}[state]
        self.metrics[f"timed {name}" if timed else f"{name}:m:f"] += 1

    def server_ms(self) -> int:
        sec, usec = self.r.time()
        return sec * 1000 + usec // 1000

    def near(self, real: float | int | str | bytes | None, model: int, what: str, drift: int) -> None:
        """A Redis timestamp taken at model time ``model``: the server clock then, plus the offset."""
        assert real is not None and real != b"", f"{what}: missing"
        value = float(real)
        assert value == int(value), f"{what}: {real!r} is not a whole number of ms"
        late = int(value) - (self.t0 + model)
        assert 0 <= late <= drift, f"{what}: {int(value)} is {late} ms off model time {model} (drift {drift})"

    def emit(self, event: str, **fields: Any) -> None:
        self.events.append({"event": event, **{k: str(v) for k, v in fields.items()}})

    def live(self, state: S | None) -> bool:
        return state is not None and state not in FINAL

    def release_unique(self, task: MTask) -> None:
        """A task became final: its unique key is free (its key entry expires with its record)."""
        if task.unique_key and self.unique.get(task.unique_key) == task.id:
            del self.unique[task.unique_key]

    def drop_keys(self, task: MTask) -> None:
        """A task's record was deleted: both its entries go with it."""
        self.release_unique(task)
        if task.key and self.keyed.get(task.key) == task.id:
            del self.keyed[task.key]

    def retire(self, task: MTask) -> None:
        task.in_done = True
        task.has_ttl = self.ttl > 0
        if self.ttl > 0:
            self.retires += 1

    def settle_trims(self) -> None:
        """Follow what the call's retire()s trimmed from the done and cancelled indexes. Trimming
        is the scripts' housekeeping policy (how often, how many): the model only requires that
        nothing is trimmed before it finished ttl ago, and the oldest of each index go first."""
        if not self.retires:
            return
        self.retires = 0
        for index in sorted(RETAINED):
            expired = {
                t.id: t.finished for t in self.tasks.values()
                if t.in_done and INDEX_OF[t.state] == index and t.finished <= self.now - self.ttl
            }
            if not expired:
                continue
            members = {m.decode() for m in self.r.zrange(getattr(self.k, index), 0, -1)}
            trimmed = {i for i in expired if i not in members}
            earliest_first(trimmed, expired, f"{index} trim")
            for task_id in trimmed:
                self.tasks[task_id].in_done = False

    def finish_cancelled(self, task: MTask, error: dict[str, str] | None) -> None:
        task.outcomes.append("cancelled")
        task.state = S.CANCELLED
        task.error = error
        task.finished, task.finished_blank = self.now, False
        task.worker = ""
        self.stats["cancelled"] += 1
        self.release_unique(task)
        self.retire(task)

    def settle_failure(self, task: MTask, error: dict[str, str], allow_retry: bool) -> S:
        task.error = error
        retried = allow_retry and task.attempts <= task.max_retries
        if retried:  # (a failed attempt is told by the FAILED record itself, not stored)
            task.outcomes.append("retried")
            task.worker = ""
            task.state = S.RETRYING
            task.run_at = self.now + task.backoff
            self.stats["retried"] += 1
        else:
            task.state = S.FAILED
            task.finished, task.finished_blank = self.now, False
            self.stats["failed"] += 1
            self.release_unique(task)
        return task.state

    def quarantine(self, task: MTask) -> None:
        """A script found the record malformed and moved it aside: FAILED, alone."""
        self.emit("malformed", task=task.id, **{"from": task.state.value}, error=MALFORMED)
        task.state, task.worker = S.FAILED, ""
        task.error = {"type": "MalformedRecord", "message": f"task record is malformed: {MALFORMED}"}
        task.finished, task.finished_blank = self.now, False
        self.stats["failed"] += 1
        self.stats["malformed"] += 1
        self.release_unique(task)

    def count_run(self, task: MTask) -> None:
        self.stats["runs"] += 1
        self.runtime += self.now - task.started

    def leave_running(self, task: MTask) -> None:
        task.deadline = None

    def index_of(self, task: MTask) -> str | None:
        """The index that holds the task (None: final and trimmed from done or cancelled)."""
        index = INDEX_OF[task.state]
        return None if index in RETAINED and not task.in_done else index

    def pending_order(self) -> list[str]:
        return [t.id for t in sorted(self.tasks.values(), key=lambda t: t.score) if t.state is S.PENDING]

    def token_for(self, data: st.DataObject, task: MTask | None) -> str:
        """The task's current token most of the time, else a stale or made-up one."""
        current = task.token if task is not None and task.token else "1"
        choice = data.draw(st.sampled_from(["current", "current", "current", "older", "bogus"]), label="token")
        if choice == "older":
            return str(max(int(current) - 1, 0))
        return "999999" if choice == "bogus" else current

    def pick_task(self, data: st.DataObject, *prefer: tuple[S, ...]) -> str:
        """A task id: most often one in the first preferred states, then the next, then any
        task, now and then one that does not exist."""
        pools = [sorted(i for i, t in self.tasks.items() if t.state in states) for states in prefer]
        pools = [p for p in [*pools, sorted(self.tasks)] if p]
        weighted = [pool for rank, pool in enumerate(pools) for _ in range(max(4 - 2 * rank, 1))]
        pool = data.draw(st.sampled_from([*weighted, ["ghost"]]), label="pool")
        return data.draw(st.sampled_from(pool), label="task")

    # -------------------------------------------------------------------- rules

    @initialize(ttl=st.sampled_from([0, TTL]))
    def retention(self, ttl: int) -> None:
        self.ttl = ttl  # one retention per example, as one deployment has one setting

    @initialize(data=st.data())
    def first_tasks(self, data: st.DataObject) -> None:
        self.add_tasks(data)  # every example starts with work to do

    def has(self, *states: S) -> bool:
        return any(t.state in states for t in self.tasks.values())

    @rule(data=st.data())
    def enqueue(self, data: st.DataObject) -> None:
        self.add_tasks(data)

    @rule(data=st.data())
    def enqueue_more(self, data: st.DataObject) -> None:
        self.add_tasks(data)  # a second rule: enqueue is drawn twice as often

    def add_tasks(self, data: st.DataObject) -> None:
        n = data.draw(st.integers(1, 3), label="n")
        specs = []
        for _ in range(n):
            resend = bool(self.tasks) and data.draw(st.integers(0, 9), label="resend?") == 0
            task_id = data.draw(st.sampled_from(sorted(self.tasks))) if resend else f"t{next(self.ids)}"
            specs.append(
                TaskSpec(
                    id=task_id,
                    name="m:f",
                    priority=data.draw(st.integers(0, 9), label="priority"),
                    args=b"[]",
                    kwargs=b"{}",
                    max_retries=data.draw(st.integers(0, 2), label="max_retries"),
                    timeout_ms=0,
                    backoff_ms=(backoff := data.draw(backoffs, label="backoff")),
                    backoff_max_ms=backoff,
                    jitter=False,
                    delay_ms=data.draw(delays, label="delay"),
                    key=data.draw(st.sampled_from(IDEMPOTENCY_KEYS), label="key"),
                    unique_key=data.draw(st.sampled_from(IDEMPOTENCY_KEYS), label="unique_key"),
                )
            )
        broken = data.draw(st.sampled_from([None] * 8 + ["priority", "duplicate"]), label="broken")
        if broken == "priority":
            specs[-1] = specs[-1]._replace(priority=10)
        elif broken == "duplicate":
            specs.append(specs[0])
        if broken or len({s.id for s in specs}) < len(specs):
            self.refused(ValidationError, self.t.enqueue(specs, max_payload=BIG_PAYLOAD))
            return

        expected, created = [], 0
        for s in specs:
            if s.id in self.tasks:  # sent before: answered as created, left alone
                expected.append((s.id, True))
                continue
            holder = self.keyed.get(s.key) if s.key else None
            if holder is None or holder not in self.tasks:  # key= first, as long as the record exists
                holder = self.unique.get(s.unique_key) if s.unique_key else None
                if holder is not None and not self.live(self.tasks[holder].state if holder in self.tasks else None):
                    holder = None
            if holder is not None:
                expected.append((holder, False))
                continue
            if s.key:
                self.keyed[s.key] = s.id
            if s.unique_key:
                self.unique[s.unique_key] = s.id
            self.stats["seq"] += 1
            state = S.SCHEDULED if s.delay_ms else S.PENDING
            self.tasks[s.id] = MTask(
                id=s.id, priority=s.priority, max_retries=s.max_retries, backoff=s.backoff_ms, key=s.key,
                unique_key=s.unique_key, state=state, created=self.now, run_at=self.now + s.delay_ms,
                score=s.priority * SPAN + self.stats["seq"],
            )
            self.emit("enqueued", task=s.id, name="m:f", priority=s.priority, state=state.value)
            expected.append((s.id, True))
            created += 1
        if created:
            self.stats["enqueued"] += created
            self.metrics["enqueued:m:f"] += created
            self.wake = True
        reply = self.send(self.t.enqueue(specs, max_payload=BIG_PAYLOAD))
        assert [(e.id, e.created) for e in reply] == expected

    @precondition(lambda self: self.has(S.PENDING))
    @rule(data=st.data())
    def a_record_is_corrupted(self, data: st.DataObject) -> None:
        """Someone with write access deletes a PENDING record's name: every script that meets
        it moves it aside alone (claim, cancel), or refuses to requeue it (retry_failed)."""
        task = self.tasks[data.draw(st.sampled_from(sorted(i for i, t in self.tasks.items() if t.state is S.PENDING)))]
        self.r.hdel(self.k.task(task.id), "name")
        task.malformed = True

    @precondition(lambda self: self.has(S.PENDING))
    @rule(worker=st.sampled_from(WORKERS), n=st.integers(1, 4), lease=durations)
    def claim(self, worker: str, n: int, lease: int) -> None:
        self.take(worker, n, lease)

    @precondition(lambda self: self.has(S.PENDING))
    @rule(worker=st.sampled_from(WORKERS), n=st.integers(1, 4), lease=durations)
    def claim_more(self, worker: str, n: int, lease: int) -> None:
        self.take(worker, n, lease)  # a second rule: claims are drawn twice as often

    def take(self, worker: str, n: int, lease: int) -> None:
        if self.paused:  # claims nothing, writes nothing
            before = snapshot(self.r)
            assert self.send(self.t.claim(worker, n, lease)) == []
            assert snapshot(self.r) == before, "a claim of a paused queue changed the database"
            return
        order = self.pending_order()
        taken, rest = order[:n], order[n:]
        expected = []
        aside = [self.tasks[i] for i in taken if self.tasks[i].malformed]
        first = self.tokens + 1  # model tokens from 1 on; the real ones are learnt from the reply
        for task_id in taken:
            task = self.tasks[task_id]
            if task.malformed:
                continue
            self.tokens += 1
            task.state, task.worker, task.token = S.RUNNING, worker, str(self.tokens)
            task.attempts += 1
            task.started, task.deadline = self.now, self.now + lease
            self.emit("claimed", task=task_id, name="m:f", priority=task.priority, worker=worker, attempt=task.attempts)
            expected.append((task_id, task.token, task.attempts, task.max_retries, task.priority))
        for task in aside:  # after the claimed ones
            self.quarantine(task)
        if len(taken) > len(aside):
            self.stats["started"] += len(taken) - len(aside)
            self.metrics["wait"] += len(taken) - len(aside)
        if len(taken) == n and rest:
            self.wake = True
        sec, usec = self.r.time()
        reply = self.send(self.t.claim(worker, n, lease))
        if expected:  # past the counter and at least Redis TIME in microseconds (claim.lua)
            shift = int(reply[0].token) - first
            assert shift >= 0 and int(reply[0].token) >= sec * 1_000_000 + usec, "tokens only grow, from TIME in us"
            for i, (task_id, token, *rest) in enumerate(expected):
                self.tasks[task_id].token = str(shift + int(token))
                expected[i] = (task_id, self.tasks[task_id].token, *rest)
            self.tokens += shift
        got = [(x.task_id, x.token, x.attempt, x.max_retries, x.priority) for x in reply]
        assert got == expected
        assert all((x.name, x.args, x.kwargs, x.timeout_ms) == ("m:f", [], {}, 0) for x in reply)

    @rule(data=st.data(), worker=st.sampled_from(WORKERS), lease=st.sampled_from([0, HALF, UNIT + HALF]))
    def heartbeat(self, data: st.DataObject, worker: str, lease: int) -> None:
        if lease == 0:
            self.workers.pop(worker, None)
            reply = self.send(self.t.deregister(worker))
            assert (reply.lost, reply.cancel) == ([], [])
            self.near(reply.now_ms, self.now, "heartbeat now", self.server_ms() - self.t0)
            return
        pairs = []
        for _ in range(data.draw(st.integers(0, 3), label="leases")):
            task_id = self.pick_task(data, (S.RUNNING,))
            pairs.append((task_id, self.token_for(data, self.tasks.get(task_id))))
        info = data.draw(st.sampled_from([{}, {"host": "h1", "load": "0.50"}, {"running": "2"}]), label="info")
        lost, cancel = [], []
        for task_id, token in pairs:
            task = self.tasks.get(task_id)
            if task is not None and task.state is S.RUNNING and task.token == token:
                task.deadline = self.now + lease
                if task.cancel_requested:
                    cancel.append(task_id)
            else:
                lost.append(task_id)
        registration = self.workers.setdefault(worker, MWorker(0, 0))
        registration.deadline, registration.last_seen = self.now + lease, self.now
        registration.info.update(info)
        reply = self.send(self.t.heartbeat(worker, lease, info, pairs))
        assert (reply.lost, reply.cancel) == (lost, cancel)
        self.near(reply.now_ms, self.now, "heartbeat now", self.server_ms() - self.t0)

    @precondition(lambda self: self.has(S.RUNNING))
    @rule(data=st.data())
    def complete(self, data: st.DataObject) -> None:
        task_id = self.pick_task(data, (S.RUNNING,))
        task = self.tasks.get(task_id)
        token = self.token_for(data, task)
        result = orjson.dumps({"n": next(self.errors)})
        call = self.t.complete(task_id, token, result, self.ttl)
        if task is None:
            return self.refused(TaskNotFound, call, task_id)
        if task.state is not S.RUNNING or task.token != token:
            resent = task.state is S.SUCCESS and task.token == token  # reads as this call resent: not late
            return self.refused(LeaseLost, call, task_id, late=0 if resent else 1)
        holder = task.worker
        self.outcome(S.SUCCESS, timed=True)
        task.state, task.result = S.SUCCESS, result  # (told by the record itself, not stored)
        task.finished, task.finished_blank = self.now, False
        if task.error is not None:  # a success shows no error; the last one is kept as history
            task.last_error, task.error = task.error, None
        self.leave_running(task)
        self.stats["succeeded"] += 1
        self.count_run(task)
        self.release_unique(task)
        self.retire(task)
        self.emit("succeeded", task=task_id, name="m:f", worker=holder)
        done_at = self.send(call)
        self.near(done_at, self.now, "completion time", self.server_ms() - self.t0)
        self.settle_trims()

    @precondition(lambda self: self.has(S.RUNNING))
    @rule(data=st.data(), mode=st.sampled_from(["retry", "retry", "fatal", "cancelled"]))
    def fail(self, data: st.DataObject, mode: str) -> None:
        self.fail_attempt(data, mode)

    @precondition(lambda self: self.has(S.RUNNING))
    @rule(data=st.data())
    def fail_and_retry(self, data: st.DataObject) -> None:
        self.fail_attempt(data, "retry")

    def fail_attempt(self, data: st.DataObject, mode: str) -> None:
        task_id = self.pick_task(data, (S.RUNNING,))
        task = self.tasks.get(task_id)
        token = self.token_for(data, task)
        n = next(self.errors)
        error = {"type": "E", "message": f"error {n}"}
        call = self.t.fail(task_id, token, encode_error(n), mode=mode, ttl_ms=self.ttl, seed=n)
        if task is None:
            return self.refused(TaskNotFound, call, task_id)
        if task.state is not S.RUNNING or task.token != token:
            return self.refused(LeaseLost, call, task_id)
        holder, attempt, asked_to_cancel = task.worker, task.attempts, task.cancel_requested
        self.leave_running(task)
        self.count_run(task)
        reply = self.send(call)
        if mode == "cancelled":
            self.finish_cancelled(task, error)
            expected = S.CANCELLED
        elif asked_to_cancel:
            # A task asked to cancel must not be tried again (reap and release honour the
            # request the same way): it ends CANCELLED, or FAILED, never RETRYING.
            assert reply.state in (S.CANCELLED, S.FAILED), (
                f"fail({mode}) of {task_id}, whose cancel was requested, answered {reply.state.value}: "
                "the task will run again although it was cancelled"
            )
            if reply.state is S.CANCELLED:
                self.finish_cancelled(task, error)
            else:
                self.settle_failure(task, error, allow_retry=False)
            expected = reply.state
        else:
            expected = self.settle_failure(task, error, allow_retry=mode == "retry")
        assert reply.state is expected
        self.outcome(expected, timed=True)
        if expected is S.RETRYING:
            self.near(reply.run_at, task.run_at, "retry time", self.server_ms() - self.t0)
        else:
            assert reply.run_at is None
        self.emit(
            expected.value.lower(), task=task_id, name="m:f", worker=holder, attempt=attempt,
            error=encode_error(n).decode(),
        )
        self.settle_trims()

    @precondition(lambda self: self.has(S.RUNNING))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        pairs = []
        for _ in range(data.draw(st.integers(0, 3), label="pairs")):
            task_id = self.pick_task(data, (S.RUNNING,))
            pairs.append((task_id, self.token_for(data, self.tasks.get(task_id))))
        released = []
        for task_id, token in pairs:
            task = self.tasks.get(task_id)
            if task is None or task.state is not S.RUNNING or task.token != token:
                continue
            holder = task.worker
            self.leave_running(task)
            if task.cancel_requested:
                self.finish_cancelled(task, {"type": "Cancelled", "message": "cancel requested"})
                self.outcome(S.CANCELLED)
                self.emit("cancelled", task=task_id, worker=holder)
            else:
                task.state, task.worker = S.PENDING, ""
                task.outcomes.append("released")
                task.attempts = max(task.attempts - 1, 0)
                self.emit("released", task=task_id, worker=holder)
                released.append(task_id)
        if released:
            self.stats["released"] += len(released)
            self.wake = True
        assert self.send(self.t.release(pairs, ttl_ms=self.ttl)) == released
        self.settle_trims()

    @precondition(lambda self: bool(self.tasks))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        self.cancel_one(self.pick_task(data, WAITING, (S.RUNNING,)))

    @precondition(lambda self: self.has(S.RUNNING))
    @rule(data=st.data())
    def cancel_running(self, data: st.DataObject) -> None:
        self.cancel_one(self.pick_task(data, (S.RUNNING,)))  # a request its worker sees later

    def cancel_one(self, task_id: str) -> None:
        task = self.tasks.get(task_id)
        call = self.t.cancel(task_id, self.ttl)
        if task is None:
            return self.refused(TaskNotFound, call, task_id)
        if task.state in FINAL:
            return self.refused(InvalidTransition, call, task.state.value)
        if task.malformed and task.state is S.PENDING:
            self.quarantine(task)
            with pytest.raises(MalformedRecord, match=MALFORMED):
                self.send(call)
            return
        if task.state is S.RUNNING:
            task.cancel_requested = True
            self.emit("cancel_requested", task=task_id)
            assert self.send(call) is S.RUNNING
            return
        was = task.state
        task.state = S.CANCELLED
        task.finished, task.finished_blank = self.now, False
        self.stats["cancelled"] += 1
        self.outcome(S.CANCELLED)
        self.release_unique(task)
        self.retire(task)
        self.emit("cancelled", task=task_id, **{"from": was.value})
        assert self.send(call) is S.CANCELLED
        self.settle_trims()

    @precondition(lambda self: self.has(S.SCHEDULED, S.RETRYING))
    @rule(limit=st.integers(1, 4))
    def promote(self, limit: int) -> None:
        waiting = [t for t in self.tasks.values() if t.state in (S.SCHEDULED, S.RETRYING)]
        due = {t.id: t.run_at for t in waiting if t.run_at <= self.now}
        reply = self.send(self.t.promote(limit))
        assert (reply.moved, reply.more) == (min(limit, len(due)), len(due) > limit)
        scores = {i: self.r.zscore(self.k.pending, i) for i in due}
        moved = sorted((i for i in due if scores[i] is not None), key=lambda i: scores[i] % SPAN)  # by sequence
        earliest_first(moved, due, "promote")
        assert [due[x] for x in moved] == sorted(due[x] for x in moved), "promoted out of run-at order"
        for i, task_id in enumerate(moved):
            task = self.tasks[task_id]
            self.stats["seq"] += 1
            was, task.state = task.state, S.PENDING
            task.score = task.priority * SPAN + self.stats["seq"]
            assert scores[task_id] == task.score, f"promoted #{i} {task_id} got score {scores[task_id]}"
            self.emit("promoted", task=task_id, **{"from": was.value})
        if moved:
            self.stats["promoted"] += len(moved)
            self.wake = True

    @precondition(lambda self: self.has(S.RUNNING) or bool(self.workers))
    @rule(limit=st.integers(1, 4))
    def reap(self, limit: int) -> None:
        expired = {t.id: t.deadline for t in self.tasks.values() if t.state is S.RUNNING and t.deadline < self.now}
        dead = {w: reg.deadline for w, reg in self.workers.items() if reg.deadline < self.now}
        reply = self.send(self.t.reap(limit, seed=7, ttl_ms=self.ttl))
        assert reply.more is (len(expired) > limit)
        assert len(reply.tasks) == min(limit, len(expired))
        earliest_first([x.task_id for x in reply.tasks], expired, "reap")
        for reaped in reply.tasks:
            task = self.tasks[reaped.task_id]
            holder, attempt = task.worker, task.attempts
            assert reaped.worker == holder
            self.leave_running(task)
            error = lease_expired(holder, attempt)
            if task.cancel_requested:
                self.finish_cancelled(task, error)
                state = S.CANCELLED
            else:
                state = self.settle_failure(task, error, allow_retry=True)
            assert reaped.state is state, f"reaped {task.id} to {reaped.state.value}, model says {state.value}"
            self.stats["reaped"] += 1
            self.outcome(state)
            self.metrics["reaped"] += 1
            self.emit("reaped", task=task.id, name="m:f", worker=holder, attempt=attempt, state=state.value)
        assert len(reply.dead_workers) == min(limit, len(dead))
        earliest_first([w for w, _ in reply.dead_workers], dead, "reap workers")
        drift = self.server_ms() - self.t0
        for worker, last_seen in reply.dead_workers:
            registration = self.workers.pop(worker)
            self.near(last_seen, registration.last_seen, f"last heartbeat of {worker}", drift)
            self.emit("worker_lost", worker=worker, last_seen=last_seen)
        self.settle_trims()

    @precondition(lambda self: self.has(S.FAILED))
    @rule(data=st.data())
    def retry_failed(self, data: st.DataObject) -> None:
        failed = {t.id: t.finished for t in self.tasks.values() if t.state is S.FAILED}
        by_id = data.draw(st.booleans(), label="by id")
        if by_id:
            ids = [self.pick_task(data, (S.FAILED,)) for _ in range(data.draw(st.integers(1, 3)))]
            call = self.t.retry_failed(ids)
            for task_id in ids:
                task = self.tasks.get(task_id)
                if task is None:
                    return self.refused(TaskNotFound, call, task_id)
                if task.state is not S.FAILED:
                    return self.refused(InvalidTransition, call, f"{task_id} {task.state.value}")
                if task.malformed:
                    return self.refused(MalformedRecord, call, MALFORMED)
            moved = self.send(call)
            assert moved == list(dict.fromkeys(ids))
        else:
            limit = data.draw(st.integers(1, 4), label="limit")
            first = [m.decode() for m in self.r.zrange(self.k.failed, 0, limit - 1)]
            moved = self.send(self.t.retry_failed(limit=limit))
            if any(self.tasks[i].malformed for i in failed):  # those stay FAILED, in their place
                assert moved == [i for i in first if not self.tasks[i].malformed]
            else:
                assert len(moved) == len(set(moved)) == min(limit, len(failed))
                earliest_first(moved, failed, "retry_failed")
        for task_id in moved:
            task = self.tasks[task_id]
            if task.key and self.keyed.get(task.key) not in self.tasks:
                self.keyed[task.key] = task_id
            if task.unique_key:
                holder = self.unique.get(task.unique_key)
                if not self.live(self.tasks[holder].state if holder in self.tasks else None):
                    self.unique[task.unique_key] = task_id
            task.worker = ""
            if task.started is not None:
                task.outcomes.append("failed")  # no longer told by the record: stored
            self.stats["seq"] += 1
            task.state, task.attempts = S.PENDING, 0
            task.score = task.priority * SPAN + self.stats["seq"]
            task.finished, task.finished_blank = None, True
            task.cancel_requested = False  # retried on purpose: an old cancel request must not stop it
            self.emit("requeued", task=task_id)
        if moved:
            self.stats["requeued"] += len(moved)
            self.wake = True

    @precondition(lambda self: bool(self.tasks))
    @rule(index=st.sampled_from(["pending", "scheduled", "retrying", "failed", "done", "cancelled"]),
          limit=st.integers(1, 4))
    def purge(self, index: str, limit: int) -> None:
        members = {t.id: t for t in self.tasks.values() if self.index_of(t) == index}
        if index == "pending":
            order = {t.id: t.score for t in members.values()}
        elif index in ("scheduled", "retrying"):
            order = {t.id: t.run_at for t in members.values()}
        else:
            order = {t.id: t.finished for t in members.values()}
        n = self.send(self.t.purge(getattr(self.k, index), limit))
        assert n == min(limit, len(members))
        gone = [i for i in members if not self.r.exists(self.k.task(i))]
        assert len(gone) == n, f"purge of {index} said {n} but deleted {len(gone)} records"
        earliest_first(gone, order, f"purge {index}")
        for task_id in gone:
            self.drop_keys(self.tasks.pop(task_id))
        if n:
            self.stats["purged"] += n
            self.emit("purged", count=n)

    @precondition(lambda self: bool(self.tasks))
    @rule(data=st.data())
    def run_now(self, data: st.DataObject) -> None:
        task_id = self.pick_task(data, (S.SCHEDULED, S.RETRYING))
        task = self.tasks.get(task_id)
        call = self.t.run_now(task_id)
        if task is None:
            return self.refused(TaskNotFound, call, task_id)
        if task.state not in (S.SCHEDULED, S.RETRYING):
            return self.refused(InvalidTransition, call, task.state.value)
        if task.malformed:
            return self.refused(MalformedRecord, call, MALFORMED)
        was = task.state
        self.stats["seq"] += 1
        task.state = S.PENDING
        task.score = task.priority * SPAN + self.stats["seq"]
        self.stats["promoted"] += 1
        self.wake = True
        self.emit("promoted", task=task_id, **{"from": was.value}, by="run_now")
        assert self.send(call) is was

    @precondition(lambda self: bool(self.tasks))
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        task_id = self.pick_task(data, (S.FAILED, S.SUCCESS, S.CANCELLED), WAITING)
        task = self.tasks.get(task_id)
        call = self.t.delete(task_id)
        if task is None:
            return self.refused(TaskNotFound, call, task_id)
        if task.state is S.RUNNING:
            return self.refused(InvalidTransition, call, "RUNNING")
        self.drop_keys(self.tasks.pop(task_id))
        self.stats["deleted"] += 1
        self.emit("deleted", task=task_id, state=task.state.value)
        assert self.send(call) is task.state

    @precondition(lambda self: self.has(S.RUNNING))
    @rule(data=st.data(), fraction=st.sampled_from(["0.0", "0.5", "1.0", "1e-05", "1.5", "-0.5"]))
    def progress(self, data: st.DataObject, fraction: str) -> None:
        """Only the holder of the current lease writes; anything refused writes nothing at all
        (not even the late counter). A report stays on the record through retries."""
        task_id = self.pick_task(data, (S.RUNNING,))
        task = self.tasks.get(task_id)
        token = self.token_for(data, task)
        payload = orjson.dumps({"n": next(self.errors)})
        call = self.t.progress(task_id, token, fraction, payload, max_bytes=100)
        if not 0 <= float(fraction) <= 1:
            return self.refused(ValidationError, call, "fraction")
        if task is None:
            return self.refused(TaskNotFound, call, task_id)
        if task.state is not S.RUNNING or task.token != token:
            return self.refused(LeaseLost, call, task_id, late=0)
        task.progress = (fraction, payload.decode(), self.now)
        self.emit("progress", task=task_id, fraction=fraction, data=payload.decode())
        self.near(self.send(call), self.now, "progress time", self.server_ms() - self.t0)

    @precondition(lambda self: bool(self.tasks))
    @rule(data=st.data())
    def watch(self, data: st.DataObject) -> None:
        """Someone waits for a task: an unfinished, readable record is marked; nothing else changes."""
        task_id = self.pick_task(data, (*WAITING, S.RUNNING))
        task = self.tasks.get(task_id)
        call = self.t.watch(task_id)
        if task is None:
            return self.refused(TaskNotFound, call, task_id)
        if task.state not in FINAL and not task.malformed:
            task.waiting = True
        assert self.send(call) == task.state.value

    @rule(on=st.booleans())
    def pause(self, on: bool) -> None:
        changed = on != self.paused
        if changed:
            self.paused = on
            self.emit("paused" if on else "resumed")
            self.wake = self.wake or not on  # resuming wakes an idle worker
        assert self.send(self.t.pause(on)) is changed

    # ------------------------------------------------------------ periodic schedules

    @initialize()
    def first_schedule(self) -> None:
        self.upsert("s1", UNIT, 5)  # every example has a schedule to fire

    @rule(sid=st.sampled_from(SCHEDULES), every=st.sampled_from(EVERIES), priority=st.sampled_from([3, 5]))
    def schedule_upsert(self, sid: str, every: int, priority: int) -> None:
        self.upsert(sid, every, priority)

    def upsert(self, sid: str, every: int, priority: int) -> None:
        next_ms = (self.now // every + 1) * every  # its first tick after now
        fields = {"task": "m:f", "priority": str(priority)}
        call = self.t.schedule_upsert(sid, next_ms, {"every": str(every // 1000)}, fields)
        sched = self.schedules.get(sid)
        if sched is None:
            self.schedules[sid] = MSchedule(every, priority, self.now, self.now, next_ms, ("exact", next_ms))
            self.emit("schedule_created", schedule=sid, next_ms=next_ms)
            assert self.send(call) == "created"
            return
        if (sched.every, sched.priority) == (every, priority):
            before = snapshot(self.r)
            assert self.send(call) == "unchanged"
            assert snapshot(self.r) == before, "an unchanged declaration wrote"
            return
        if sched.every != every:  # its timing changed: from its next tick, no catch-up of the old one's
            sched.since, sched.next_ms = self.now, next_ms
        else:  # a tick due but not yet fired keeps its turn
            sched.next_ms = min(sched.next_ms, next_ms)
        sched.every, sched.priority = every, priority
        if not sched.paused:
            sched.index = ("exact", sched.next_ms)
        self.emit("schedule_updated", schedule=sid, next_ms=sched.next_ms)
        assert self.send(call) == "updated"

    @rule(data=st.data())
    def schedule_fire(self, data: st.DataObject) -> None:
        self.fire(data)

    @rule(data=st.data())
    def schedule_fire_more(self, data: st.DataObject) -> None:
        self.fire(data)  # a second rule: fires are drawn twice as often

    def fire(self, data: st.DataObject) -> None:
        """A scheduler fires a schedule's due ticks at the model's now: the newest ``n`` (a
        catch-up policy), the older ones skipped; now and then a racing scheduler's call that
        read the record before another fired (stale), or a call for a schedule gone or paused."""
        paused = sorted(sid for sid, sched in self.schedules.items() if sched.paused)
        sid = data.draw(st.sampled_from([*sorted(self.schedules) * 3, *paused * 2, *SCHEDULES]), label="schedule")
        self.now += data.draw(st.sampled_from([0, 1, 1, 2, 4]), label="units waited") * UNIT  # ticks fall due
        sched = self.schedules.get(sid)
        n = data.draw(st.integers(1, 3), label="fire at most")
        overlap = data.draw(st.booleans(), label="overlap skip")
        stale = data.draw(st.integers(0, 4), label="stale?") == 0 and sched is not None
        every = sched.every if sched else UNIT
        last = sched.last_tick if sched and sched.last_tick is not None else -1
        lower = max(last, sched.since if sched else self.now - UNIT)
        due = list(range(lower // every * every + every, self.now + 1, every))  # ticks in (lower, now]
        fire, skipped = due[-n:], due[:-n]
        next_ms = (self.now // every + 1) * every
        expected = "" if last < 0 else str(last)
        if stale:  # what the record held before the last fire (another scheduler fired since)
            expected = "0" if last < 0 else ("" if last - every < 0 else str(last - every))
        previous = (sched.last_task or "") if sched else ""
        task = TaskSpec("", "m:f", sched.priority if sched else 5, b"[]", b"{}", 0, 0, 0, 0, False, 0, "", "")
        pairs = [(tick, tick_task_id(sid, tick)) for tick in fire]
        call = self.t.schedule_fire(
            sid, expected, next_ms, task, pairs, skipped, overlap_skip=overlap, previous=previous
        )
        if sched is None or sched.paused or stale:  # nothing written: a removed or paused schedule never fires
            before = snapshot(self.r)
            reply = self.send(call)
            assert snapshot(self.r) == before, f"a fire of {sid} that is not its turn wrote"
            if sched is None or sched.paused:
                assert reply == FireReply("gone", 0, "")
            else:
                assert reply == FireReply("stale", 0, "" if sched.last_tick is None else str(sched.last_tick))
            return
        unfinished = previous in self.tasks and self.tasks[previous].state not in FINAL
        if overlap and previous and fire and unfinished:
            skipped, fire = skipped + fire, []
        created = 0
        for tick, task_id in ((t, tick_task_id(sid, t)) for t in fire):
            kind = "fired" if tick == fire[-1] else "caught_up"
            if task_id not in self.tasks:
                self.stats["seq"] += 1
                self.tasks[task_id] = MTask(
                    id=task_id, priority=sched.priority, max_retries=0, backoff=0, key="", unique_key="",
                    state=S.PENDING, created=self.now, run_at=self.now,
                    score=sched.priority * SPAN + self.stats["seq"],
                )
                self.emit("enqueued", task=task_id, name="m:f", priority=sched.priority, state="PENDING")
                created += 1
            self.emit("tick", schedule=sid, tick=tick, outcome=kind, task=task_id)
            sched.counts[kind] += 1
            self.metrics[f"schedule_ticks:{kind}:{sid}"] += 1
        if len(skipped) <= 100:
            for tick in skipped:
                self.emit("tick", schedule=sid, tick=tick, outcome="skipped")
        sched.counts["skipped"] += len(skipped)
        self.metrics[f"schedule_ticks:skipped:{sid}"] += len(skipped)
        if fire or skipped:
            sched.last_tick = max(fire + skipped)
        if fire:
            sched.last_task = tick_task_id(sid, fire[-1])
        sched.next_ms = next_ms
        sched.index = ("exact", next_ms)
        if created:
            self.stats["enqueued"] += created
            self.metrics["enqueued:m:f"] += created
            self.wake = True
        assert self.send(call) == FireReply("fired", created)

    @rule(sid=st.sampled_from(SCHEDULES))
    def schedule_remove(self, sid: str) -> None:
        call = self.t.schedule_remove(sid)
        if self.schedules.pop(sid, None) is None:
            before = snapshot(self.r)
            assert self.send(call) is False
            assert snapshot(self.r) == before
            return
        self.last_ticks.pop(sid, None)  # (its tick counters in the metrics hash stay)
        self.emit("schedule_removed", schedule=sid)
        assert self.send(call) is True

    @rule(sid=st.sampled_from(SCHEDULES), on=st.booleans())
    def schedule_pause(self, sid: str, on: bool) -> None:
        self.pause_schedule(sid, on)

    @rule(sid=st.sampled_from(SCHEDULES))
    def schedule_pause_more(self, sid: str) -> None:
        self.pause_schedule(sid, True)  # pausing drawn more often: a paused schedule's fire is then tried

    def pause_schedule(self, sid: str, on: bool) -> None:
        call = self.t.schedule_pause(sid, on)
        sched = self.schedules.get(sid)
        if sched is None or sched.paused == on:
            before = snapshot(self.r)
            assert self.send(call) == (-1 if sched is None else 0)
            assert snapshot(self.r) == before
            return
        sched.paused = on
        if not on:  # back in the index due now; the ticks of the pause are not caught up
            sched.since, sched.index = self.now, ("near", self.now)
        self.emit("schedule_paused" if on else "schedule_resumed", schedule=sid)
        assert self.send(call) == 1

    @rule(units=st.integers(1, 3))
    def time_passes(self, units: int) -> None:
        self.now += units * UNIT

    @precondition(lambda self: self.wake)
    @rule()
    def worker_takes_the_wake_token(self) -> None:
        self.r.lpop(self.k.wake)
        self.wake = False

    # ---------------------------------------------------------------- the check

    @invariant()
    def redis_matches_the_model(self) -> None:
        r, k = self.r, self.k
        drift = self.server_ms() - self.t0
        pipe = r.pipeline(transaction=False)
        for task_id in self.tasks:
            pipe.hgetall(k.task(task_id))
            pipe.pttl(k.task(task_id))
        fetched = pipe.execute()
        for task, record, pttl in zip(self.tasks.values(), fetched[::2], fetched[1::2], strict=True):
            self.check_record(task, {f.decode(): v.decode() for f, v in record.items()}, pttl, drift)

        for index in INDEXES:
            actual = {m.decode(): s for m, s in r.zrange(getattr(k, index), 0, -1, withscores=True)}
            holders = [t for t in self.tasks.values() if self.index_of(t) == index]
            assert actual.keys() == {t.id for t in holders}, f"{index} holds {sorted(actual)}"
            for t in holders:
                if index == "pending":
                    assert actual[t.id] == t.score, f"pending score of {t.id}"
                else:
                    model = {"scheduled": t.run_at, "retrying": t.run_at, "running": t.deadline}.get(index, t.finished)
                    self.near(actual[t.id], model, f"{index} score of {t.id}", drift)
        assert [m.decode() for m in r.zrange(k.pending, 0, -1)] == self.pending_order(), "pending order"

        self.check_entries()

        workers = {w.decode(): s for w, s in r.zrange(k.workers, 0, -1, withscores=True)}
        assert workers.keys() == self.workers.keys(), "registered workers"
        for worker, registration in self.workers.items():
            self.near(workers[worker], registration.deadline, f"deadline of {worker}", drift)
            fields = {f.decode(): v.decode() for f, v in r.hgetall(k.worker(worker)).items()}
            self.near(fields.pop("last_seen", None), registration.last_seen, f"last_seen of {worker}", drift)
            assert fields == registration.info, f"fields of {worker}"
            assert r.pttl(k.worker(worker)) > 0

        assert int(r.get(k.tokens) or 0) == self.tokens, "lease-token counter"
        stats = {f.decode(): int(v) for f, v in r.hgetall(k.stats).items()}
        runtime = stats.pop("runtime_ms", None)
        series_minute = stats.pop("series_minute", None)  # the minute of the last series snapshot
        assert (series_minute is None) == (not self.stats["enqueued"]), "series_minute"
        assert stats == {name: n for name, n in self.stats.items() if n}, "stats"
        if self.stats["runs"]:
            assert runtime is not None and self.runtime <= runtime <= self.runtime + drift * self.stats["runs"]
        else:
            assert runtime is None

        events = [{f.decode(): v.decode() for f, v in fields.items()} for _, fields in r.xrange(k.events)]
        assert len(events) == len(self.events), "number of events"
        for i, (got, want) in enumerate(zip(events, self.events, strict=True)):
            assert {name: got.get(name) for name in want} == want, f"event {i}"

        assert r.llen(k.wake) == int(self.wake), "wake-up list"
        series_keys = self.check_metrics(runtime or 0)
        self.check_schedules(events, drift)
        expected_keys = {k.task(i) for i in self.tasks} | {k.unique(key) for key in self.unique}
        expected_keys |= series_keys
        expected_keys |= {k.schedule(sid) for sid in self.schedules}
        if any(not sched.paused for sched in self.schedules.values()):
            expected_keys.add(k.schedules)
        if self.metrics["wait"] or any(n for name, n in self.metrics.items() if name != "wait"):
            expected_keys.add(k.metrics)
        if self.metrics["enqueued:m:f"]:
            expected_keys.add(k.names)
        expected_keys |= {k.idempotency(key) for key in self.keyed}
        expected_keys |= {k.worker(w) for w in self.workers}
        expected_keys |= {getattr(k, index) for t in self.tasks.values() if (index := self.index_of(t))}
        pairs = ((k.workers, self.workers), (k.stats, self.stats), (k.events, self.events), (k.tokens, self.tokens))
        for name, present in pairs:
            if present:
                expected_keys.add(name)
        if self.wake:
            expected_keys.add(k.wake)
        if self.paused:
            expected_keys.add(k.paused)
        assert {key.decode() for key in r.scan_iter(count=1000)} == expected_keys, "the set of keys"

    def check_schedules(self, events: list[dict[str, str]], drift: int) -> None:
        """Each schedule's record and index entry against the model, and the three invariants
        that hold whatever the model says: ticks fired once, last ticks that only grow."""
        r, k = self.r, self.k
        fired: dict[str, list[int]] = {}
        for event in events:
            if event.get("event") == "tick" and event.get("outcome") in ("fired", "caught_up"):
                fired.setdefault(event["schedule"], []).append(int(event["tick"]))
        for sid, ticks in fired.items():  # (a schedule removed and declared again goes on after its old ticks)
            assert ticks == sorted(set(ticks)), f"schedule {sid} fired a tick twice, or out of order: {ticks}"
        index = {m.decode(): s for m, s in r.zrange(k.schedules, 0, -1, withscores=True)}
        assert index.keys() == {sid for sid, sched in self.schedules.items() if not sched.paused}, "schedules index"
        for sid, sched in self.schedules.items():
            what = f"schedule {sid}"
            f = {a.decode(): b.decode() for a, b in r.hgetall(k.schedule(sid)).items()}
            expected = {
                "id": None, "task": "m:f", "every": str(sched.every // 1000), "priority": str(sched.priority),
                "last_tick": "" if sched.last_tick is None else str(sched.last_tick), "next_ms": str(sched.next_ms),
                "paused": "1" if sched.paused else "0", "last_task": sched.last_task,
                **{kind: str(sched.counts[kind]) if sched.counts[kind] else None
                   for kind in ("fired", "caught_up", "skipped")},
            }
            assert {name: f.get(name) for name in expected} == expected, what
            self.near(f.get("since"), sched.since, f"{what} since", drift)
            self.near(f.get("created_at"), sched.created, f"{what} created_at", drift)
            if not sched.paused:
                kind, ms = sched.index
                if kind == "exact":
                    assert index[sid] == ms, f"{what} index score"
                else:
                    self.near(index[sid], ms, f"{what} index score", drift)
            if f["last_tick"]:
                shown = int(f["last_tick"])
                assert shown >= self.last_ticks.get(sid, shown), f"{what}: last tick went back"
                self.last_ticks[sid] = shown

    def check_metrics(self, runtime: int) -> set[str]:
        """The metrics hash against the model (run times: their sum is the stats' runtime_ms),
        the names admitted, and the series: its minutes add up to the stats counters; returns
        the series keys."""
        r, k = self.r, self.k
        raw = {f.decode(): int(v) for f, v in r.hgetall(k.metrics).items()}
        runs = sum(n for name, n in raw.items() if name.startswith("run:"))
        waits = sum(n for name, n in raw.items() if name.startswith("wait:"))
        assert runs == self.stats["runs"], "run-time histogram count"
        assert raw.get("run_ms:m:f", 0) == runtime, "run-time histogram sum"
        assert waits == self.metrics["wait"], "wait-time histogram count"
        assert raw.get("wait_ms", 0) >= 0
        counters = {name: n for name, n in raw.items() if not name.startswith(("run", "wait"))}
        untimed = {name: n for name, n in self.metrics.items() if n and name != "wait" and " " not in name}
        assert counters == untimed, "metrics"
        finished: Counter[str] = Counter()
        for name, n in self.metrics.items():
            if name.startswith("timed ") or name.split(":")[0] in OUTCOMES:
                finished[name.removeprefix("timed ").split(":")[0]] += n
        decoded = decode_metrics("default", 0, r.hgetall(k.metrics), None)
        assert decoded.finished == ({"m:f": {o: n for o, n in finished.items() if n}} if +finished else {}), "outcomes"
        assert not decoded.notes
        assert r.smembers(k.names) == ({b"m:f"} if self.metrics["enqueued:m:f"] else set()), "names"
        found = {key.decode() for key in r.scan_iter(match=k.series("*"), count=1000)}
        starts = sorted(int(key.rsplit(":", 1)[1]) for key in found)
        for key in found:
            assert 0 < r.pttl(key) <= 25 * 3_600_000, f"expiry of {key}"
        points = decode_series(starts, [r.hgetall(k.series(m)) for m in starts], r.hgetall(k.stats))
        summed = {name: sum(getattr(p, name) for p in points) for name in SERIES_FIELDS}
        expected = {name: self.stats[name] for name in SERIES_FIELDS if name != "runtime_ms"}
        assert summed == {**expected, "runtime_ms": runtime or 0}, "series"
        return found

    def check_entries(self) -> None:
        """Both kinds of idempotency entry; a key entry expires exactly when its record does."""
        r, k = self.r, self.k
        for prefix, model in ((k.unique(""), self.unique), (k.idempotency(""), self.keyed)):
            actual = {key.decode()[len(prefix) :]: r.get(key).decode() for key in r.scan_iter(match=prefix + "*")}
            assert actual == model, f"idempotency entries {prefix}*"
        for key, task_id in self.keyed.items():
            assert (r.pttl(k.idempotency(key)) > 0) == self.tasks[task_id].has_ttl, f"expiry of key entry {key}"
        for key in self.unique:
            assert r.pttl(k.unique(key)) == -1, f"unique entry {key} expires"

    def check_record(self, task: MTask, f: dict[str, str], pttl: int, drift: int) -> None:
        what = f"task {task.id}"
        assert f, f"{what} has no record"
        expected = {
            "name": None if task.malformed else "m:f", "state": task.state.value,
            "priority": str(task.priority), "args": "[]", "kwargs": "{}", "attempts": str(task.attempts),
            "max_retries": str(task.max_retries), "timeout_ms": "0", "backoff_ms": str(task.backoff),
            "backoff_max_ms": str(task.backoff), "jitter": "0", "key": task.key, "score": str(task.score),
            "unique_key": task.unique_key,
        }
        absent = {name: d for name, (_, d) in RECORD.items() if d is not REQUIRED}  # enqueue leaves defaults out
        assert {name: f.get(name, absent.get(name)) for name in expected} == expected, what
        assert "id" not in f and "queue" not in f, f"{what}: its key says its id and queue (#18)"
        assert f.get("token") == task.token, f"{what} token"
        assert f.get("worker") == task.worker, f"{what} worker"
        assert (f.get("result") or None) == (task.result.decode() if task.result else None), f"{what} result"
        for name, model in (("error", task.error), ("last_error", task.last_error)):
            if model is None:
                assert not f.get(name), f"{what} {name}"  # absent, or blanked by a success
            else:
                error = orjson.loads(f[name])
                assert {"type": error.get("type"), "message": error.get("message")} == model, f"{what} {name}"
        flagged = f.get("cancel_requested", "0") == "1"
        assert not (flagged and task.state in WAITING), (
            f"{what} is {task.state.value} with a cancel request left over: its next attempt is cancelled at once"
        )
        if task.state not in FINAL:  # a final task may keep or drop its old request
            assert flagged == task.cancel_requested, f"{what} cancel_requested"
        self.near(f.get("created_at"), task.created, f"{what} created_at", drift)
        run_at = f.get("run_at", f.get("created_at"))  # a PENDING task's record leaves run_at out: created_at
        self.near(run_at, task.run_at, f"{what} run_at", drift)
        if task.started is None:
            assert "started_at" not in f
        else:
            self.near(f.get("started_at"), task.started, f"{what} started_at", drift)
        if task.finished is not None:
            self.near(f.get("completed_at"), task.finished, f"{what} completed_at", drift)
        else:
            assert f.get("completed_at", "") == "" and task.finished_blank == ("completed_at" in f), what
        assert (pttl > 0) == task.has_ttl, f"{what} ttl {pttl}"
        history = orjson.loads(f.get("history") or "[]")
        assert [entry["outcome"] for entry in history] == task.outcomes[-10:], f"{what} history"
        if task.progress is None:
            assert not {"progress", "progress_data", "progress_at"} & f.keys(), f"{what} progress"
        else:
            assert (f.get("progress"), f.get("progress_data")) == task.progress[:2], f"{what} progress"
            self.near(f.get("progress_at"), task.progress[2], f"{what} progress_at", drift)
        assert f.get("waiting") == ("1" if task.waiting else None), f"{what} waiting"


@pytest.mark.slow
def test_scripts_follow_the_model(r: redis.Redis, backend: Any) -> None:
    """Failures print the whole step sequence unshrunk: shrinking these machines takes
    minutes, past the suite's timeout. Set ORCH_MODEL_SHRINK=1 to get a minimal one.
    On the cluster a quarter of the examples: each step's snapshot walks three masters."""
    machine = type("BoundScriptsModel", (ScriptsModel,), {"r": r})
    phases = list(Phase) if os.environ.get("ORCH_MODEL_SHRINK") else [Phase.explicit, Phase.generate]
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=15 if backend.cluster else 60,
            stateful_step_count=40,
            deadline=None,
            database=None,
            phases=phases,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )


# ------------------------------------------------- what the model found, in a few lines


def test_a_failed_attempt_of_a_task_asked_to_cancel_is_not_retried(r: redis.Redis) -> None:
    """The cancel request comes while the attempt runs; the attempt raises before the
    worker's next heartbeat brings the request, so the worker reports fail(mode=retry)."""
    t = Transitions(QueueKeys("default"))
    run(r, t.enqueue([spec("a", max_retries=3)], max_payload=BIG_PAYLOAD))
    [lease] = run(r, t.claim("w1", 1, 60_000))
    assert run(r, t.cancel("a", 0)) is S.RUNNING
    reply = run(r, t.fail("a", lease.token, ERROR))
    assert reply.state in (S.CANCELLED, S.FAILED), f"cancelled task answered {reply.state.value}: it will run again"


def test_retry_failed_drops_an_old_cancel_request(r: redis.Redis) -> None:
    """A cancel request that came too late (the attempt failed first) must not cancel the
    attempt an operator later asks for with `orch retry`."""
    t = Transitions(QueueKeys("default"))
    run(r, t.enqueue([spec("a", max_retries=3)], max_payload=BIG_PAYLOAD))
    [lease] = run(r, t.claim("w1", 1, 60_000))
    run(r, t.cancel("a", 0))
    assert run(r, t.fail("a", lease.token, ERROR, mode="fatal")).state is S.FAILED
    assert run(r, t.retry_failed(["a"])) == ["a"]
    [again] = run(r, t.claim("w1", 1, 60_000))
    beat = run(r, t.heartbeat("w1", 60_000, {}, [("a", again.token)]))
    assert beat.cancel == [], "the retried attempt is cancelled at its first heartbeat"
