"""The hostile-Redis fuzzer's vocabulary: ways to spoil a live queue, and where each spoiled task must end.

Owns the corruptions (a record's field, a record replaced or deleted, an index entry
deleted, a queue-wide key spoiled, the known-queues set spoiled), applying one to a queue
that a real worker and scheduler serve, and the expected end of each task it touched.
Does not draw (``test_hostile`` does, with Hypothesis) nor start processes (``procs``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Literal

import redis

from orchestrator import Orchestrator
from orchestrator.keys import QueueKeys, queues_key

MAIN, SPARE = "default", "spare"  # the worker serves both; SPARE takes the queue-wide corruptions
VICTIM_DELAY = 0.3  # a victim is SCHEDULED while it is spoiled: no script has read it yet

# A field and a value no script writes: the task must end FAILED with the reason.
BAD_FIELDS: tuple[tuple[str, bytes | None], ...] = (
    ("priority", b"x"), ("priority", b"12"), ("timeout_ms", b"1e3"), ("max_retries", b"x"),
    ("attempts", b"-1"), ("name", b"\xff\xfe"), ("name", b""), ("state", b"BOGUS"), ("key", b"\xff"),
    ("args", b"{not json"), ("name", None), ("state", None),
)  # (no id or queue: a record does not hold them, its key says them; #18)
# A field of a RUNNING task, spoiled while its worker runs it: the task must still end
# (FAILED with the reason when a script reads that field after, else SUCCESS), never stay stuck.
RUNNING_FIELDS: tuple[tuple[str, bytes], ...] = (
    ("token", b"x"), ("started_at", b"soon"), ("worker", b"\xff"), ("attempts", b"x"), ("state", b"BOGUS"),
    ("name", b"\xff"), ("cancel_requested", b"2"),
)
# A queue-wide key of SPARE and what it is made to hold.
BAD_KEYS: tuple[tuple[str, str], ...] = (
    ("pending", "string"), ("scheduled", "string"), ("retrying", "string"), ("running", "string"), ("wake", "hash"),
    ("stats", "bad seq"), ("tokens", "abc"), ("tokens", "0"),
)

End = Literal["SUCCESS", "FAILED", "dropped", "final"]  # final: SUCCESS, or FAILED with a reason


@dataclass(frozen=True)
class Corruption:
    kind: Literal["field", "running", "wrongtype", "deleted", "orphan", "queue_key", "known_queues"]
    detail: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.kind}({', '.join(self.detail)})"


@dataclass
class Round:
    """What one round spoiled and what it expects."""

    expect: dict[tuple[str, str], End] = field(default_factory=dict)  # (queue, task id) -> end
    needs_repair: bool = False  # an orphan or a queue-wide key: `orch doctor --repair` must mend it
    spoiled_keys: list[str] = field(default_factory=list)


def apply(app: Orchestrator, r: redis.Redis, corruption: Corruption, plan: Round) -> None:
    """Spoil the queue as ``corruption`` says; record in ``plan`` where its tasks must end."""
    keys = QueueKeys(MAIN)
    if corruption.kind == "known_queues":
        if corruption.detail == ("deleted",):
            r.delete(queues_key())  # the next enqueue registers its queue again; a queue that gets
            plan.needs_repair = True  # none (SPARE) waits for `orch doctor --repair` to add it back
        else:
            r.sadd(queues_key(), "bad name!", b"\xff\xfe", "x" * 65)
            plan.needs_repair = True
        return
    if corruption.kind == "queue_key":
        _spoil_queue_key(app, r, corruption.detail, plan)
        return
    if corruption.kind == "running":
        _spoil_running(app, r, corruption.detail, plan)
        return
    victim = app.enqueue("tests:add", [1, 2], delay=VICTIM_DELAY, max_retries=3)
    task_key = keys.task(victim.id)
    if corruption.kind == "field":
        name, value = corruption.detail[0], _value(corruption.detail[1])
        if value is None:
            r.hdel(task_key, name)
        else:
            r.hset(task_key, name, value)
        plan.expect[(MAIN, victim.id)] = "FAILED"
    elif corruption.kind == "wrongtype":
        r.delete(task_key)
        r.set(task_key, "not a hash")
        plan.expect[(MAIN, victim.id)] = "dropped"
    elif corruption.kind == "deleted":
        r.delete(task_key)
        plan.expect[(MAIN, victim.id)] = "dropped"
    elif corruption.kind == "orphan":
        r.zrem(keys.scheduled, victim.id)
        plan.expect[(MAIN, victim.id)] = "SUCCESS"
        plan.needs_repair = True


def _value(text: str) -> bytes | None:
    return None if text == "<deleted>" else bytes.fromhex(text)


def field_corruption(name: str, value: bytes | None, kind: Literal["field", "running"] = "field") -> Corruption:
    """Detail as text (hex for the value), so Hypothesis prints a readable failing example."""
    return Corruption(kind, (name, "<deleted>" if value is None else value.hex()))


def _spoil_running(app: Orchestrator, r: redis.Redis, detail: tuple[str, ...], plan: Round) -> None:
    handle = app.enqueue("tests:sleep", [0.3], max_retries=3)
    task_key = QueueKeys(MAIN).task(handle.id)
    deadline = time.monotonic() + 10
    while r.hget(task_key, "state") != b"RUNNING":
        if time.monotonic() > deadline:
            raise AssertionError(f"task {handle.id} did not start within 10 s")
        time.sleep(0.005)
    value = _value(detail[1])
    assert value is not None
    r.hset(task_key, detail[0], value)
    plan.expect[(MAIN, handle.id)] = "final"


def _spoil_queue_key(app: Orchestrator, r: redis.Redis, detail: tuple[str, ...], plan: Round) -> None:
    """Tasks of SPARE first (one ready, one delayed), then its key spoiled: they must end
    SUCCESS once `orch doctor --repair` has mended it."""
    name, how = detail
    if not plan.spoiled_keys:  # once a key is spoiled, enqueue to SPARE may be refused (CORRUPT)
        for delay in (None, VICTIM_DELAY):
            handle = app.enqueue("tests:add", [2, 2], queue=SPARE, delay=delay, max_retries=3)
            plan.expect[(SPARE, handle.id)] = "SUCCESS"
    key = getattr(QueueKeys(SPARE), name)
    if how == "0":  # set back: claim may re-seed it from Redis TIME first, else doctor finds it behind
        r.set(key, "0")  # a token a record holds; either way the round ends with tokens ahead of all
        return
    if how in ("string", "hash"):
        r.delete(key)
        r.set(key, "spoiled") if how == "string" else r.hset(key, "spoiled", "1")
    elif how == "bad seq":
        r.hset(key, "seq", "x")
    else:
        r.set(key, how)
    plan.needs_repair = True
    plan.spoiled_keys.append(key)


def end_of(r: redis.Redis, queue: str, task_id: str) -> str | None:
    """Where the task is: its state, "dropped" when no index holds it and a dropped event
    names it, None while it is on its way."""
    keys = QueueKeys(queue)
    if r.type(keys.task(task_id)) == b"hash":
        state = r.hget(keys.task(task_id), "state")
        return state.decode(errors="replace") if state is not None else None
    waiting = ("pending", "scheduled", "retrying", "running")
    indexed = any(r.zscore(getattr(keys, i), task_id) is not None for i in waiting)
    if indexed:
        return None
    named = any(f.get(b"event") == b"dropped" and f.get(b"task") == task_id.encode() for _, f in r.xrange(keys.events))
    return "dropped" if named else None


def failure_reason(r: redis.Redis, queue: str, task_id: str) -> str:
    raw = r.hget(QueueKeys(queue).task(task_id), "error") or b"{}"
    try:
        error = json.loads(raw)
    except ValueError:
        return ""
    return f"{error.get('type', '')}: {error.get('message', '')}" if isinstance(error, dict) else ""
