"""What hand-written data broke in a queue, and ``orch doctor --repair``: put back what can be derived.

Owns finding, then on request repairing: a queue-wide key of the wrong type (moved aside
to ``<key>:corrupt:<ms>``, its tasks then put back from their records), counters that are
not integers (``seq`` set past every pending task, other counts reset to 0), a lease-token
counter that is spoiled, behind a token in use, or absent while a record holds one (set
past every token in use, from Redis TIME, so tokens only grow), records that live in no
index (orphans: put back into the index their state names, a RUNNING one with an expired
lease so the reaper counts the attempt), RETRYING and CANCELLED tasks left in scheduled
and done from before those states had their own indexes (moved there, score kept),
index entries whose record is gone (dropped, with a ``dropped`` event), and the
known-queues set (bad entries removed, queues found by their keys added). Periodic
schedules whose records do not read are named (``broken_schedules``), not repaired. Everything is
read in bounded SCAN / ZSCAN batches. Malformed records are not repaired here: the scripts
move them aside (FAILED, with the reason) when they meet them. Does not print (``cli``)
and does not check the server (``health``).
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.exceptions import ResponseError, WatchError

from .connection import node_client
from .errors import ValidationError
from .health import Check, Status
from .keys import QueueKeys, queues_key, schedule_ids_key, set_aside
from .known_queues import known_queues, parse_members
from .models import DEFAULT_PRIORITY, INDEX_OF, INDEXES, RETAINED, TaskState
from .reading import redis_time_ms, text, to_int
from .sanitize import escape
from .schedule_engine import record_problem

SCAN_BATCH = 500  # keys or entries read per SCAN / ZSCAN call
MAX_SHOWN = 5  # findings shown per queue by `orch doctor` (all are repaired)
PRIORITY_SPAN = 10_000_000_000_000  # pending score = priority * span + seq (lua/_lib.lua)
KEY_TYPES = {  # every queue-wide key and the type the scripts keep it as
    **{name: "zset" for name in (*INDEXES, "workers")},
    "stats": "hash", "events": "stream", "wake": "list", "tokens": "string",
    "metrics": "hash", "names": "set",  # (written best effort: a spoiled one costs counts silently)
}


@dataclass(frozen=True)
class Finding:
    """One problem in one queue: what is wrong, and what ``--repair`` does about it."""

    queue: str
    what: str
    repair: str


def _text(value: bytes | str | None) -> str:
    """Text that keeps bytes that are not UTF-8 (surrogateescape), so a repair can name them exactly."""
    return "" if value is None else text(value, "surrogateescape")


_int = to_int
now_ms = redis_time_ms


# ------------------------------------------------------------------ queue-wide keys


def bad_keys(client: Redis, keys: QueueKeys) -> list[tuple[str, str]]:
    """(name, actual type) of each queue-wide key that exists with the wrong type."""
    pipe = client.pipeline(transaction=False)
    for name in KEY_TYPES:
        pipe.type(getattr(keys, name))
    types = [_text(t) for t in pipe.execute()]
    return [(name, t) for name, t in zip(KEY_TYPES, types, strict=True) if t not in ("none", KEY_TYPES[name])]


def bad_counters(client: Redis, keys: QueueKeys) -> dict[str, str]:
    """Fields of the stats hash that are not integers (every field there is a counter)."""
    if _text(client.type(keys.stats)) != "hash":
        return {}
    return {_text(k): escape(v) for k, v in client.hgetall(keys.stats).items() if _int(v) is None}


def token_problem(client: Redis, keys: QueueKeys) -> str | None:
    """Why the lease-token counter cannot be trusted (not an integer, behind a token a record
    holds: a counter set back, or absent while a record holds a token: deleted by hand), or None."""
    raw = client.get(keys.tokens) if _text(client.type(keys.tokens)) == "string" else None
    if raw is None:
        if _text(client.type(keys.tokens)) != "none":
            return None  # of another type: bad_keys reports it (repair moves it aside, then sets it)
        highest = highest_token(client, keys)
        if not highest:
            return None
        return f"the lease-token counter {keys.tokens} is absent while a task record holds token {highest}"
    value = _int(raw)
    if value is None or value < 0:
        return f"the lease-token counter {keys.tokens} holds {escape(raw)!r}, not a count"
    highest = highest_token(client, keys)
    if highest > value:
        return f"the lease-token counter {keys.tokens} ({value}) is behind a token already issued ({highest})"
    return None


def highest_token(client: Redis, keys: QueueKeys, batch: int = SCAN_BATCH) -> int:
    """The highest lease token any task record of the queue holds (running or kept after)."""
    highest = 0
    for ids in _scan_tasks(client, keys, batch):
        pipe = client.pipeline(transaction=False)
        for task_id in ids:
            pipe.hget(keys.task(task_id), "token")
        for raw in pipe.execute(raise_on_error=False):
            token = _int(raw) if not isinstance(raw, Exception) else None
            highest = max(highest, token or 0)
    return highest


# ------------------------------------------------------------------ records and indexes


@dataclass(frozen=True)
class Orphan:
    """A record whose state names an index that does not hold its id."""

    task_id: str
    state: str
    index: str
    score: int  # where it goes back (see _score)
    moved_from: str | None = None  # the index it sits in instead, from before the split (LEGACY)


# Where a task of these states sat before retrying and cancelled had their own indexes.
LEGACY = {TaskState.RETRYING: "scheduled", TaskState.CANCELLED: "done"}


def _zscan_ids(client: Redis, key: str, batch: int = SCAN_BATCH) -> Iterator[list[str]]:
    if _text(client.type(key)) != "zset":
        return
    cursor = 0
    while True:
        cursor, entries = client.zscan(key, cursor, count=batch)
        ids = _ids([member for member, _ in entries])
        if ids:
            yield ids
        if cursor == 0:
            return


def _ids(raw: Iterable[Any]) -> list[str]:
    """Ids that are UTF-8 (the others cannot be tasks: claim moves such records aside)."""
    out = []
    for value in raw:
        try:
            out.append(value.decode() if isinstance(value, bytes) else value)
        except UnicodeDecodeError:
            continue
    return out


def _scan_tasks(client: Redis, keys: QueueKeys, batch: int) -> Iterator[list[str]]:
    prefix = keys.task("")
    for_glob = re.sub(r"([*?\[\]\\])", r"\\\1", prefix)
    cursor = 0
    node = node_client(client, keys.pending)  # a queue's keys share one slot: one node holds them all
    while True:
        cursor, found = node.scan(cursor, match=for_glob + "*", count=batch)
        ids = _ids([k[len(prefix):] for k in found])
        if ids:
            yield ids
        if cursor == 0:
            return


def _score(state: TaskState, fields: list[bytes | None], now: int) -> int:
    priority, score, run_at, completed_at = (_int(f) for f in fields)
    if state is TaskState.PENDING:
        level = priority if priority is not None and 0 <= priority <= 9 else DEFAULT_PRIORITY
        return score if score is not None else level * PRIORITY_SPAN
    if state in (TaskState.SCHEDULED, TaskState.RETRYING):
        return run_at if run_at is not None else now
    if state is TaskState.RUNNING:
        return now  # an expired lease: the reaper counts the attempt and retries or fails it
    return completed_at if completed_at is not None else now


def find_orphans(client: Redis, keys: QueueKeys, batch: int = SCAN_BATCH) -> Iterator[Orphan]:
    """Records (hashes with a known state) that are not in the index their state names.

    Each batch is read in one MULTI/EXEC, so a task moved meanwhile is seen whole. A
    record whose state is unknown goes back to pending, where claim moves it aside."""
    now = now_ms(client)
    for ids in _scan_tasks(client, keys, batch):
        pipe = client.pipeline(transaction=True)
        for task_id in ids:
            pipe.hmget(keys.task(task_id), "state", "priority", "score", "run_at", "completed_at")
            pipe.pttl(keys.task(task_id))
            for index in INDEXES:
                pipe.zscore(getattr(keys, index), task_id)
        replies = pipe.execute(raise_on_error=False)
        step = 2 + len(INDEXES)
        for i, task_id in enumerate(ids):
            record, ttl, *scores = replies[i * step:(i + 1) * step]
            if isinstance(record, Exception) or record[0] is None:
                continue  # not a hash (the scripts drop such ids), or gone since the scan
            raw_state = _text(record[0])
            state = TaskState(raw_state) if raw_state in TaskState.__members__ else None
            index = INDEX_OF[state] if state is not None else "pending"
            if any(isinstance(s, Exception) for s in scores):
                continue  # an index of the wrong type: bad_keys reports it
            if state is None and any(s is not None for s in scores):
                continue  # malformed but indexed: the scripts move it aside when they reach it
            old = LEGACY.get(state) if state is not None else None
            if old is not None and scores[INDEXES.index(index)] is None and scores[INDEXES.index(old)] is not None:
                yield Orphan(task_id, raw_state, index, int(scores[INDEXES.index(old)]), moved_from=old)
                continue
            if index in RETAINED and ttl != -1:
                continue  # retention: done trims its entry as the record expires
            if scores[INDEXES.index(index)] is None:
                yield Orphan(task_id, raw_state, index, _score(state or TaskState.PENDING, record[1:], now))


def find_dangling(client: Redis, keys: QueueKeys, batch: int = SCAN_BATCH) -> Iterator[tuple[str, str]]:
    """(index, id) of index entries whose task record does not exist (not done: retention
    trims its entries shortly after their records expire)."""
    for index in (i for i in INDEXES if i not in RETAINED):
        for ids in _zscan_ids(client, getattr(keys, index), batch):
            pipe = client.pipeline(transaction=False)
            for task_id in ids:
                pipe.exists(keys.task(task_id))
            yield from ((index, t) for t, there in zip(ids, pipe.execute(), strict=True) if not there)


# ------------------------------------------------------------------ the report


def inspect_queue(client: Redis, keys: QueueKeys, batch: int = SCAN_BATCH) -> list[Finding]:
    """Every problem of one queue that ``repair_queue`` knows, without writing anything."""
    q = keys.queue
    found = [
        Finding(q, f"{getattr(keys, name)} is a {kind}, not a {KEY_TYPES[name]}", "moved aside; its tasks put back")
        for name, kind in bad_keys(client, keys)
    ]
    found += [
        Finding(q, f"counter {name} of {keys.stats} holds {value!r}", "seq set past pending tasks; others reset to 0")
        for name, value in bad_counters(client, keys).items()
    ]
    if (problem := token_problem(client, keys)) is not None:
        found.append(Finding(q, problem, "set past every token in use, from Redis TIME"))
    found += [
        Finding(q, f"task {escape(o.task_id)} ({escape(o.state)}) is in {o.moved_from}, not {o.index} "
                "(written before the index split)", f"moved to {o.index}")
        if o.moved_from else
        Finding(q, f"task {escape(o.task_id)} ({escape(o.state)}) is in no index (an orphan)", f"put back in {o.index}")
        for o in find_orphans(client, keys, batch)
    ]
    found += [
        Finding(q, f"{index} holds task {escape(task_id)} whose record is gone", "entry dropped (event dropped)")
        for index, task_id in find_dangling(client, keys, batch)
    ]
    return found


# ------------------------------------------------------------------ the repair


def repair_queue(client: Redis, keys: QueueKeys, *, events_maxlen: int, batch: int = SCAN_BATCH) -> list[str]:
    """Repair what ``inspect_queue`` finds, in that order (keys first: their tasks become
    orphans, put back last). Returns one line per action taken."""
    moved = bad_keys(client, keys)
    done = [_move_aside(client, keys, name, kind) for name, kind in moved]
    done += _repair_counters(client, keys)
    if any(name == "tokens" for name, _ in moved) or token_problem(client, keys) is not None:
        done.append(_repair_tokens(client, keys))  # a counter moved aside: the next claim must not start at 1
    done += [line for o in find_orphans(client, keys, batch) if (line := _put_back(client, keys, o))]
    dangling = list(find_dangling(client, keys, batch))  # read whole first: dropping while scanning skips entries
    done += [_drop(client, keys, index, task_id, events_maxlen) for index, task_id in dangling]
    return done


def _move_aside(client: Redis, keys: QueueKeys, name: str, kind: str) -> str:
    key = getattr(keys, name)
    aside = set_aside(key, now_ms(client))
    client.rename(key, aside)
    return f"moved {key} ({kind}) aside to {aside}"


def _repair_counters(client: Redis, keys: QueueKeys) -> list[str]:
    done = []
    for name, value in bad_counters(client, keys).items():
        fixed = _next_seq(client, keys) if name == "seq" else 0
        client.hset(keys.stats, name, fixed)
        done.append(f"counter {name} of {keys.stats} was {value!r}: set to {fixed}")
    if _text(client.type(keys.stats)) in ("hash", "none"):
        seq = _int(client.hget(keys.stats, "seq"))
        needed = _next_seq(client, keys)
        if needed > 1 and (seq is None or seq < needed - 1):
            client.hset(keys.stats, "seq", needed - 1)  # a rebuilt stats hash: enqueue goes on after pending
            done.append(f"counter seq of {keys.stats} set to {needed - 1}, past every pending task")
    return done


def _next_seq(client: Redis, keys: QueueKeys) -> int:
    """One past the highest sequence number in the pending index's scores."""
    highest = 0
    for ids in _zscan_ids(client, keys.pending):
        for score in client.zmscore(keys.pending, ids):
            if score is not None:
                highest = max(highest, int(score) % PRIORITY_SPAN)
    return highest + 1


def _repair_tokens(client: Redis, keys: QueueKeys) -> str:
    """Past every token in use and past any count of claims ever made: Redis TIME in
    microseconds (claim.lua's floor for every new token)."""
    sec, usec = client.time()
    value = max(int(sec) * 1_000_000 + int(usec), highest_token(client, keys) + 1)
    old = client.get(keys.tokens) if _text(client.type(keys.tokens)) == "string" else None
    kept = client.hget(keys.stats, "tokens") if _text(client.type(keys.stats)) == "hash" else None
    value = max(value, (_int(old) or 0) + 1, (_int(kept) or 0) + 1)  # (kept: stats' count, from before)
    client.set(keys.tokens, value)
    return f"lease-token counter {keys.tokens} set to {value} (past every token in use, from Redis TIME)"


def _put_back(client: Redis, keys: QueueKeys, orphan: Orphan) -> str | None:
    """Add the orphan to its index unless its record changed meanwhile (WATCH)."""
    task_key = keys.task(orphan.task_id)
    with client.pipeline(transaction=True) as pipe:
        try:
            pipe.watch(task_key)  # type: ignore[no-untyped-call]
            if _text(pipe.hget(task_key, "state")) != orphan.state:
                return None  # moved meanwhile: a script put it somewhere
            pipe.multi()
            if orphan.moved_from is not None:
                pipe.zrem(getattr(keys, orphan.moved_from), orphan.task_id)
            pipe.zadd(getattr(keys, orphan.index), {orphan.task_id: orphan.score})
            if orphan.index == "pending":
                pipe.rpush(keys.wake, "1")
            pipe.execute()
        except (WatchError, ResponseError):
            return None
    if orphan.moved_from is not None:
        where = f"moved from {getattr(keys, orphan.moved_from)} to"
        return f"task {escape(orphan.task_id)} ({escape(orphan.state)}) {where} {getattr(keys, orphan.index)}"
    return f"task {escape(orphan.task_id)} ({escape(orphan.state)}) put back into {getattr(keys, orphan.index)}"


def _drop(client: Redis, keys: QueueKeys, index: str, task_id: str, events_maxlen: int) -> str:
    with client.pipeline(transaction=True) as pipe:
        pipe.zrem(getattr(keys, index), task_id)
        if events_maxlen > 0 and _text(client.type(keys.events)) in ("stream", "none"):
            fields = {"event": "dropped", "task": task_id, "reason": "no record (orch doctor --repair)"}
            pipe.xadd(keys.events, fields, maxlen=events_maxlen, approximate=True)  # type: ignore[arg-type]
        pipe.execute()
    return f"dropped task {escape(task_id)} from {getattr(keys, index)}: its record is gone"


# ------------------------------------------------------------------ every queue


def integrity_checks(client: Redis, prefix: str, batch: int = SCAN_BATCH) -> list[Check]:
    """``orch doctor``'s data checks: the known-queues set, then each queue's keys and records."""
    checks = []
    set_problems = inspect_known_queues(client, prefix)
    if set_problems:
        checks.append(Check("known queues", Status.WARN, "; ".join(set_problems) + "; run `orch doctor --repair`"))
    for queue in known_queues(client, prefix).names:
        found = inspect_queue(client, QueueKeys(queue, prefix), batch)
        shown = "; ".join(f"{f.what} -> --repair: {f.repair}" for f in found[:MAX_SHOWN])
        more = f"; and {len(found) - MAX_SHOWN} more" if len(found) > MAX_SHOWN else ""
        detail = shown + more if found else "keys, counters and indexes consistent"
        checks.append(Check(f"data {queue}", Status.FAIL if found else Status.OK, detail))
    broken = broken_schedules(client, prefix)
    if broken:
        shown = "; ".join(
            f"schedule {escape(sid)} of queue {escape(q)}: {escape(why)}" for q, sid, why in broken[:MAX_SHOWN]
        )
        more = f"; and {len(broken) - MAX_SHOWN} more" if len(broken) > MAX_SHOWN else ""
        checks.append(Check("schedules", Status.WARN, f"{shown}{more} (the scheduler sets each aside: fix the "
                            "record, declare the schedule again or `orch schedules remove` it)"))
    return checks


def broken_schedules(client: Redis, prefix: str) -> list[tuple[str, str, str]]:
    """(queue, schedule id, why) of each schedule whose record does not read: spoiled by hand,
    what the scheduler sets aside. Not repaired: only its declaration can say what it was."""
    ids = sorted((_text(k), _text(v)) for k, v in client.hgetall(schedule_ids_key(prefix)).items())
    found, read = [], []
    pipe = client.pipeline(transaction=False)
    for sid, queue in ids:
        try:
            pipe.hgetall(QueueKeys(queue, prefix).schedule(sid))
            read.append((sid, queue))
        except ValidationError:
            found.append((queue, sid, "its queue is not a valid queue name"))
    for (sid, queue), raw in zip(read, pipe.execute(raise_on_error=False), strict=True):
        if isinstance(raw, ResponseError) and str(raw).startswith("WRONGTYPE"):
            why: str | None = "the record is not a hash"
        elif isinstance(raw, BaseException):
            raise raw
        else:
            why = record_problem(raw, sid, queue) if raw else "listed in the schedule ids, but it has no record"
        if why:
            found.append((queue, sid, why))
    return found


def repair(client: Redis, prefix: str, *, events_maxlen: int, batch: int = SCAN_BATCH) -> list[str]:
    """``orch doctor --repair``: the known-queues set first (it says which queues to repair), then each queue."""
    done = repair_known_queues(client, prefix)
    for queue in known_queues(client, prefix).names:
        done += repair_queue(client, QueueKeys(queue, prefix), events_maxlen=events_maxlen, batch=batch)
    return done


# ------------------------------------------------------------------ the known-queues set


def queues_by_keys(client: Redis, prefix: str, batch: int = SCAN_BATCH) -> set[str]:
    """Names of the queues that have keys (``<prefix>:{Q}:...``), found by SCAN."""
    pattern = re.compile(re.escape(prefix).encode() + rb":\{([A-Za-z0-9_.\-]{1,64})\}:")
    found: set[str] = set()
    for key in client.scan_iter(match=f"{prefix}:{{*}}:*", count=batch):
        if (m := pattern.match(key if isinstance(key, bytes) else key.encode())) is not None:
            found.add(m.group(1).decode())
    return found


def inspect_known_queues(client: Redis, prefix: str) -> list[str]:
    """Problems of the known-queues set: bad entries, wrong type, queues missing from it."""
    known = known_queues(client, prefix)
    problems = [c.replace("; `orch doctor --repair`", "") for c in known.complaints]
    missing = sorted(queues_by_keys(client, prefix) - set(known.names))
    if missing and known.problem is None:
        problems.append(f"queue(s) with keys but not in {queues_key(prefix)}: {', '.join(missing)} (not served)")
    return problems


def repair_known_queues(client: Redis, prefix: str) -> list[str]:
    """Remove bad entries (or move a set of the wrong type aside) and add every queue found by its keys."""
    key = queues_key(prefix)
    done = []
    kind = _text(client.type(key))
    if kind not in ("set", "none"):
        aside = set_aside(key, now_ms(client))
        client.rename(key, aside)
        done.append(f"moved {key} ({kind}) aside to {aside}")
    members = list(client.smembers(key))
    valid = set(parse_members(members).names)
    bad = [raw for raw in members if _text(raw) not in valid]
    if bad:
        client.srem(key, *bad)
        done.append(f"removed {len(bad)} invalid name(s) from {key}")
    missing = sorted(queues_by_keys(client, prefix) - {_text(n) for n in client.smembers(key)})
    if missing:
        client.sadd(key, *missing)
        done.append(f"added {', '.join(missing)} to {key}")
    return done

