"""The invariants of the chaos soak, checked on its evidence: pure, no I/O.

Owns turning ``Collected`` (``soak_evidence``) into a ``Report``: one ``Invariant`` per
promise, each with the violations found, plus the counts the soak prints and notes worth a
look (leases reaped from a worker the soak did not touch). The words claim, lease end and
run are defined in ``soak_evidence``. Does not start or read anything (``soak``), nor run
tasks (``soak_tasks``).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from orchestrator.models import RECORD

from .soak_evidence import (
    FINAL,
    TOLERANCE_US,
    Claim,
    Collected,
    Event,
    Run,
    Timeline,
    assemble_runs,
    claim_of,
    parse_json,
    timeline,
)

MAX_SHOWN = 12  # violations listed per invariant (all are counted)


@dataclass
class Invariant:
    title: str
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def lines(self) -> list[str]:
        head = f"  [{'ok' if self.ok else 'FAIL'}] {self.title}"
        if self.ok:
            return [head]
        shown = [f"         - {v}" for v in self.violations[:MAX_SHOWN]]
        more = len(self.violations) - MAX_SHOWN
        tail = [f"         ... and {more} more"] if more > 0 else []
        return [f"{head}: {len(self.violations)} violation(s)", *shown, *tail]


@dataclass
class Report:
    invariants: list[Invariant]
    counts: dict[str, Any]
    notes: list[str] = field(default_factory=list)  # not violations: worth a look

    @property
    def passed(self) -> bool:
        return all(i.ok for i in self.invariants)


# ------------------------------------------------------------------------ invariants


class _Context:
    """The evidence, indexed once for all the checks."""

    def __init__(self, data: Collected) -> None:
        self.data = data
        self.runs, self.unknown_runs = assemble_runs(data.entries)
        self.runs_of: dict[str, list[Run]] = defaultdict(list)
        for run in self.runs.values():
            self.runs_of[run.task].append(run)
        events_of: dict[str, list[Event]] = defaultdict(list)
        for e in data.events:
            if e.task is not None:
                events_of[e.task].append(e)
        self.timelines = {task: timeline(events) for task, events in events_of.items()}
        self.by_tag: dict[str, list[str]] = defaultdict(list)
        for task_id, record in data.records.items():
            args = parse_json(record.get("args"))
            tag = args[0] if isinstance(args, list) and args else None
            self.by_tag[str(tag)].append(task_id)
        self.counts: Counter[str] = Counter()

    def timeline(self, task: str) -> Timeline:
        return self.timelines.get(task) or Timeline()


def check_final(ctx: _Context) -> Invariant:
    """Every enqueued task is in a final state; none is RUNNING without a live lease.

    Acknowledged enqueues must all exist (an enqueue whose call raised when Redis was
    killed may legitimately be lost, and is counted apart); every record, acknowledged or
    not, must be final after the drain, and the waiting and running indexes empty; each
    request created at most one task, and no task exists that no producer asked for.
    While the soak ran, no task sat in running long after its lease expired (``stale``,
    sampled once a second: the reaper must keep up through the faults).
    """
    inv = Invariant("every enqueued task is final; none running without a live lease")
    data = ctx.data
    inv.violations += data.stale
    if not data.drained:
        inv.violations.append(f"the queues did not drain within {data.drain_timeout:g} s")
    requested = set()
    for req in data.requests:
        requested.add(req["tag"])
        found = ctx.by_tag.get(req["tag"], [])
        if len(found) > 1:
            inv.violations.append(f"request {req['tag']} created {len(found)} tasks: {found}")
        if not req["ack"]:
            ctx.counts["unacknowledged present" if found else "unacknowledged lost"] += 1
            continue
        record = data.records.get(req["id"])
        if record is None:
            inv.violations.append(f"acknowledged task {req['id']} ({req['tag']}) is not in Redis")
        elif req["created"] and req["id"] not in found:
            inv.violations.append(f"acknowledged task {req['id']} does not carry its tag {req['tag']}")
    for tag, ids in ctx.by_tag.items():
        if tag not in requested:
            inv.violations.append(f"tasks {ids} with tag {tag} were enqueued by no producer")
    for task_id, record in data.records.items():
        state = record.get("state")
        if state not in FINAL:
            where = ""
            for index, members in data.indexes.get(record.get("queue", ""), {}).items():
                if task_id in members:
                    where += f" in {index} (score {members[task_id]:.0f}, now {data.now_ms})"
            inv.violations.append(f"task {task_id} is {state}{where or ' in no index'}")
    for queue, indexes in data.indexes.items():
        for index in ("pending", "scheduled", "retrying", "running"):
            for task_id, score in indexes.get(index, {}).items():
                state = data.records.get(task_id, {}).get("state")
                live = "live" if index == "running" and score > data.now_ms else "expired"
                what = f"{live} lease" if index == "running" else "entry"
                inv.violations.append(f"{queue} {index} still holds {task_id} ({state}, {what})")
        for task_id in indexes.get("failed", {}):
            if data.records.get(task_id, {}).get("state") != "FAILED":
                inv.violations.append(f"{queue} failed holds {task_id}, which is not FAILED")
    for task_id, record in data.records.items():
        state, queue = record.get("state"), record.get("queue", "")
        index = {"SUCCESS": "done", "FAILED": "failed"}.get(state or "")
        if index and task_id not in data.indexes.get(queue, {}).get(index, {}):
            inv.violations.append(f"{state} task {task_id} is missing from {queue} {index}")
    return inv


def check_success(ctx: _Context) -> Invariant:
    """SUCCESS results come from an attempt whose token was current when it completed.

    For every SUCCESS record: the result holds the token of the run that returned it and
    that is the record's token; that run ended normally ("end"), no later than the
    record's completed_at, while its lease was out (before the event that ended it, which
    must be this task's one ``succeeded``, after its last claim); and no other run ended
    later while holding a valid lease. (A zombie may log its end later still: its lease had
    ended, and its late outcome was refused.) Every task reached a final state exactly
    once: one final event, of the kind its state says.
    """
    inv = Invariant("SUCCESS results come from the attempt whose token was current")
    for task_id, record in ctx.data.records.items():
        tl = ctx.timeline(task_id)
        state = record.get("state")
        if state in FINAL:
            kinds = [e.kind if e.kind != "reaped" else f"reaped {e.fields.get('state')}" for e in tl.finals]
            expected = {"SUCCESS": ["succeeded"], "FAILED": ["failed", "reaped FAILED"],
                        "CANCELLED": ["cancelled", "reaped CANCELLED"]}[state]
            if len(kinds) != 1 or kinds[0] not in expected:
                inv.violations.append(f"{state} task {task_id} has final events {kinds or 'none'}")
        if state != "SUCCESS":
            continue
        token = record.get("token")
        result = parse_json(record.get("result"))
        if not isinstance(result, dict) or result.get("token") != token:
            got = result.get("token") if isinstance(result, dict) else result
            inv.violations.append(f"task {task_id}: result from token {got}, record token {token}")
            continue
        run = ctx.runs.get((task_id, str(token)))
        if run is None:
            inv.violations.append(f"task {task_id}: no run logged under its token {token}")
            continue
        completed_us = int(record.get("completed_at", 0)) * 1000
        if run.end_kind != "end" or run.end_us is None or run.end_us > completed_us + TOLERANCE_US:
            inv.violations.append(f"task {task_id}: the winning run did not end before completed_at "
                                  f"{completed_us}: {run.describe()}")
        claim = claim_of(run, tl.claims)
        if claim is None or claim is not (tl.claims[-1] if tl.claims else None):
            inv.violations.append(f"task {task_id}: the winning run is not the last claim ({run.describe()})")
            continue
        if claim.end is None or claim.end.kind != "succeeded":
            inv.violations.append(f"task {task_id}: the winning {claim.describe()}")
            continue
        valid = [r for r in ctx.runs_of[task_id] if _ended_in_lease(r, tl.claims)]
        last = max(valid, key=lambda r: r.end_us or 0, default=None)
        if last is not run:
            inv.violations.append(f"task {task_id}: a later run ended with a valid lease: "
                                  f"{last.describe() if last else None}; winner {run.describe()}")
    return inv


def _ended_in_lease(run: Run, claims: list[Claim]) -> bool:
    claim = claim_of(run, claims)
    return claim is not None and run.end_us is not None and run.end_us <= claim.lease_end_us + TOLERANCE_US


def check_overlap(ctx: _Context) -> Invariant:
    """No two attempts of one task ran while both held a valid lease.

    Per task: (a) the event stream alternates claim, lease end, claim, ...: no claim while
    a lease is out, no lease end without one; (b) every run is tied to its claim (same
    attempt and worker, latest before the run started) and a claim ran the function at most
    once; (c) a run held a valid lease during F = [start, min(end, lease end)] (end = never
    for a run whose process was killed; F is empty when it started after its lease ended),
    and the F of two runs never overlap (beyond TOLERANCE_US).
    Runs whose whole [start, end] overlap are allowed exactly when the earlier one's lease
    had ended before the later one started: a zombie (frozen, cut off or timed out) whose
    late outcome the token refuses. They are counted by how the earlier lease ended.
    """
    inv = Invariant("no two attempts of one task ran while both held a valid lease")
    for task_id in ctx.data.records:
        tl = ctx.timeline(task_id)
        inv.violations += [f"task {task_id}: {a}" for a in tl.anomalies]
        spans: list[tuple[Run, Claim, float]] = []
        tokens_of: dict[int, set[str]] = defaultdict(set)
        for run in ctx.runs_of.get(task_id, []):
            if run.starts > 1:
                inv.violations.append(f"task {task_id}: token {run.token} started the function {run.starts} times")
            if run.start_us is None:
                ctx.counts["runs without a start entry"] += 1
                continue
            claim = claim_of(run, tl.claims)
            if claim is None:
                inv.violations.append(f"task {task_id}: no claim for the run {run.describe()}")
                continue
            tokens_of[id(claim)].add(run.token)
            fenced_end = min(run.end_us if run.end_us is not None else math.inf, claim.lease_end_us)
            if fenced_end < run.start_us:
                ctx.counts["runs started after their lease ended"] += 1
            spans.append((run, claim, fenced_end))
        for tokens in tokens_of.values():
            if len(tokens) > 1:
                inv.violations.append(f"task {task_id}: one claim ran under tokens {sorted(tokens)}")
        spans.sort(key=lambda s: s[0].start_us or 0)
        for i, (a, claim_a, end_a) in enumerate(spans):
            for b, claim_b, end_b in spans[i + 1 :]:
                if claim_a is claim_b:
                    continue
                start_a, start_b = a.start_us or 0, b.start_us or 0
                if min(end_a, end_b) - max(start_a, start_b) > TOLERANCE_US:
                    inv.violations.append(
                        f"task {task_id}: both held a valid lease: {a.describe()} [{claim_a.describe()}] and "
                        f"{b.describe()} [{claim_b.describe()}]"
                    )
                raw_end_a = a.end_us if a.end_us is not None else math.inf
                if raw_end_a > start_b and claim_a.end is not None:
                    ctx.counts[f"zombie overlaps (earlier lease {claim_a.end.kind})"] += 1
    return inv


def check_attempts(ctx: _Context) -> Invariant:
    """Attempts never exceed max_retries + 1; failed tasks carry the reason.

    For every task: its attempts field, its claims less its releases (from the events),
    and the leases its runs logged are each at most max_retries + 1, and the first two
    agree. A FAILED task's error is JSON with a type and a message.
    """
    inv = Invariant("attempts <= max_retries + 1; failed tasks carry the reason")
    complete = all(ctx.data.events_read.get(q) == n for q, n in ctx.data.events_added.items())
    for task_id, record in ctx.data.records.items():
        limit = int(record.get("max_retries", RECORD["max_retries"][1] or 0)) + 1  # absent: its default (#18)
        attempts = int(record.get("attempts", 0))
        tl = ctx.timeline(task_id)
        claimed = len(tl.claims) - tl.released
        tokens = {r.token for r in ctx.runs_of.get(task_id, [])}
        if attempts > limit or claimed > limit or len(tokens) > limit:
            inv.violations.append(f"task {task_id}: attempts {attempts}, claims {claimed}, tokens run "
                                  f"{len(tokens)}, max_retries + 1 = {limit}")
        if complete and claimed != attempts:
            inv.violations.append(f"task {task_id}: attempts field {attempts}, but {claimed} claims in the events")
        if record.get("state") == "FAILED":
            error = parse_json(record.get("error"))
            if not isinstance(error, dict) or not error.get("type") or not error.get("message"):
                inv.violations.append(f"FAILED task {task_id} has no reason: error = {record.get('error')!r}")
            else:
                ctx.counts[f"failed: {error['type']}"] += 1
    return inv


def check_keys(ctx: _Context) -> Invariant:
    """Idempotency keys gave one task each.

    Keys belong to a queue. ``key=`` (``orch:{Q}:key:<key>``) names its task as long as the
    task's record exists, so one key never has two records in one queue. ``unique_key=``
    (``orch:{Q}:unique:<key>``) names it while it is unfinished, so the tasks created with
    one unique key never overlap in time (each was created no earlier than the previous one
    finished). Every acknowledged enqueue got a task of that queue with that key, and a
    request answered "existing task" created none.
    """
    inv = Invariant("idempotency keys gave one task each")
    by_key: dict[tuple[str, str, str], list[dict[str, str]]] = defaultdict(list)
    for task_id, record in ctx.data.records.items():
        for kind in ("key", "unique_key"):
            if record.get(kind):
                by_key[(kind, record.get("queue", ""), record[kind])].append({**record, "id": task_id})
    for (kind, queue, key), tasks in by_key.items():
        tasks.sort(key=lambda r: int(r.get("created_at", 0)))
        for before, after in itertools.pairwise(tasks):
            done = before.get("completed_at")
            if kind == "key":
                inv.violations.append(f"key {key} of {queue}: task {after['id']} created while the record of "
                                      f"task {before['id']} exists")
            elif before.get("state") not in FINAL or not done or int(after["created_at"]) < int(done):
                inv.violations.append(
                    f"unique key {key} of {queue}: task {after['id']} created at {after['created_at']} while task "
                    f"{before['id']} was unfinished (state {before.get('state')}, completed_at {done or 'none'})"
                )
    for req in ctx.data.requests:
        if not req["ack"] or not (req.get("key") or req.get("unique_key")):
            continue
        record = ctx.data.records.get(req["id"], {})
        for kind in ("key", "unique_key"):
            if req.get(kind) and (record.get("queue"), record.get(kind)) != (req["queue"], req[kind]):
                inv.violations.append(f"request {req['tag']} with {kind} {req[kind]} of {req['queue']} got task "
                                      f"{req['id']} with {kind} {record.get(kind)!r} of {record.get('queue')}")
        if not req["created"] and ctx.by_tag.get(req["tag"]):
            inv.violations.append(f"request {req['tag']} was answered 'existing' but created {ctx.by_tag[req['tag']]}")
    ctx.counts["keys used"] = len(by_key)
    ctx.counts["tasks per key (max over the run)"] = max((len(t) for t in by_key.values()), default=0)
    return inv


def check_health(ctx: _Context) -> Invariant:
    """The soak itself saw everything: no process died unless killed, and the event log the
    checks rely on is complete (the tailer read as many events as Redis says it added)."""
    inv = Invariant("processes died only when killed; the event log is complete")
    inv.violations += [f"unexpected exit: {e}" for e in ctx.data.unexpected_exits]
    for queue, added in ctx.data.events_added.items():
        read = ctx.data.events_read.get(queue, 0)
        if read != added:
            inv.violations.append(f"{queue}: read {read} events, Redis added {added}")
    return inv


def unexplained_reaps(data: Collected) -> list[str]:
    """Leases reaped although the soak did nothing to their worker: it was not killed before,
    nor frozen, and Redis was up, during the lease's last ``lease_ms`` (plus a heartbeat's slack).
    Allowed (at-least-once), but a sign of a starved machine or a worker that stopped beating."""
    if not data.lease_ms:
        return []
    window = data.lease_ms + 1000
    out = []
    for e in data.events:
        if e.kind != "reaped":
            continue
        holder, t = e.fields.get("worker", ""), e.ms
        killed = frozen = down = False
        frozen_at = down_at = None
        for f in sorted(data.faults, key=lambda f: f["ms"] or 0):
            ms = f["ms"]
            if f["kind"] == "kill9" and f["target"] == holder and ms is not None and ms <= t:
                killed = True
            elif f["kind"] == "freeze" and f["target"] == holder:
                frozen_at = ms
            elif f["kind"] == "thaw" and f["target"] == holder and frozen_at is not None:
                frozen |= frozen_at <= t and (ms is None or ms >= t - window)
                frozen_at = None
            elif f["kind"] == "redis_down":
                down_at = ms
            elif f["kind"] == "redis_up" and down_at is not None:
                down |= down_at <= t and (ms is None or ms >= t - window)
                down_at = None
        frozen |= frozen_at is not None and frozen_at <= t
        if not (killed or frozen or down):
            out.append(f"task {e.task}: lease of {holder} reaped at {t} (attempt {e.fields.get('attempt')})")
    return out


def check(data: Collected) -> Report:
    ctx = _Context(data)
    invariants = [check_final(ctx), check_success(ctx), check_overlap(ctx), check_attempts(ctx), check_keys(ctx),
                  check_health(ctx)]
    counts: dict[str, Any] = dict(ctx.counts)
    acked = [r for r in data.requests if r["ack"]]
    counts.update({
        "requests": len(data.requests),
        "acknowledged": len(acked),
        "acknowledged new": sum(1 for r in acked if r["created"]),
        "acknowledged existing (key)": sum(1 for r in acked if not r["created"]),
        "unacknowledged": len(data.requests) - len(acked),
        "tasks": len(data.records),
        "runs": len(ctx.runs),
        "runs that could not find their lease": ctx.unknown_runs,
        "events": len(data.events),
    })
    for state, n in Counter(r.get("state") for r in data.records.values()).items():
        counts[f"state {state}"] = n
    counts["retried tasks"] = sum(1 for r in data.records.values() if int(r.get("attempts", 0)) > 1)
    counts["reaped"] = sum(1 for e in data.events if e.kind == "reaped")
    surprises = unexplained_reaps(data)
    counts["reaped from a live, running worker"] = len(surprises)
    return Report(invariants, counts, surprises)
