"""Redis memory per queued task, and where it goes (issue #18, point 3).

    .venv/bin/python scripts/bench/memory.py [-n 100000] [--payload small|none] [--one-by-one]
    .venv/bin/python scripts/bench/memory.py --layouts [-n 100000]

One private redis-server (no persistence). Enqueues N tasks into one queue (the bulk API,
or one call each with --one-by-one) and prints: INFO used_memory delta / N; the MEMORY
USAGE (SAMPLES 0) of one task's key; the pending zset's and the event stream's share per
task (their MEMORY USAGE / N; the stream is capped, so its share falls as N grows: its bytes
per entry are printed too); the rest (idempotency entries, stats, metrics, the keyspace's
hash table, allocator slack) per task; and one record as redis-cli HGETALL shows it. The
scripts are loaded and the queue registered before the first reading, so they count in no
figure. --layouts instead writes N tasks in each of a few layouts with plain commands (no
engine: a key per task with a few fields, a zset or a list entry, a per-queue hash of JSON
records) and prints used_memory delta / N of each: the floor each layout sets. Owns the
measurement only; the bench's memory column (``scripts/bench/run``, 20,000 no-op tasks one
call each) is the cross-library one.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from orchestrator import Orchestrator, TaskRequest  # noqa: E402
from orchestrator.ids import new_task_id  # noqa: E402
from orchestrator.keys import QueueKeys  # noqa: E402
from orchestrator.redis_local import LocalRedis  # noqa: E402

PAYLOADS = {"small": (["a.png"], {"width": 200}), "none": ([], {})}


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def measure(n: int, payload: str, one_by_one: bool) -> dict[str, float]:
    args, kwargs = PAYLOADS[payload]
    with LocalRedis(appendonly=False) as server:
        app = Orchestrator(server.url)
        r = app.redis
        app.enqueue("images.tasks:resize", args=args, kwargs=kwargs)  # scripts loaded, queue known
        keys = QueueKeys("default")
        for key in r.keys(f"{keys.base}*"):  # empty the queue, keep the scripts and orch:queues
            r.delete(key)
        m0 = int(r.info("memory")["used_memory"])
        if one_by_one:
            handles = [app.enqueue("images.tasks:resize", args=args, kwargs=kwargs) for _ in range(n)]
        else:
            handles = app.enqueue_many(TaskRequest("images.tasks:resize", args, kwargs) for _ in range(n))
        m1 = int(r.info("memory")["used_memory"])
        task_id = handles[-1].id
        task = int(r.memory_usage(keys.task(task_id), samples=0) or 0)
        pending = int(r.memory_usage(keys.pending, samples=0) or 0)
        events = int(r.memory_usage(keys.events, samples=0) or 0)
        per_task = (m1 - m0) / n
        out = {"per_task": per_task, "task_key": task, "pending": pending / n, "events": events / n,
               "rest": per_task - task - pending / n - events / n,
               "event_entry": events / max(int(r.xlen(keys.events)), 1)}
        record = r.hgetall(keys.task(task_id))
        print(f"HGETALL {keys.task(task_id)}:")
        for field, value in record.items():
            print(f"  {_text(field)} = {_text(value)}")
        print(f"  ({len(record)} fields, {sum(len(f) + len(v) for f, v in record.items())} bytes of fields and values)")
        app.close()
        return out


# A queued task as each layout would store it: (what, the commands writing task i with id t).
Fill = Callable[[Any, str, int], object]
BASE = "orch:{default}:"
RECORD = {"name": "images.tasks:resize", "state": "PENDING", "created_at": 1796403349479}
SCORE = 5 * 10**13  # priority 5's first score


def _layouts() -> list[tuple[str, Fill]]:
    def key(fields: dict[str, Any]) -> Fill:
        return lambda p, t, i: p.hset(f"{BASE}task:{t}", mapping=fields)

    def with_score(p: Any, t: str, i: int) -> object:
        return p.hset(f"{BASE}task:{t}", mapping={**RECORD, "score": SCORE + i})

    def zset(p: Any, t: str, i: int) -> object:
        return p.zadd(f"{BASE}pending", {t: SCORE + i})

    def listed(p: Any, t: str, i: int) -> object:
        return p.rpush(f"{BASE}pending", t)

    def hashed(p: Any, t: str, i: int) -> object:
        return p.hset(f"{BASE}tasks", t, json.dumps(RECORD, separators=(",", ":")))

    def both(*fills: Fill) -> Fill:
        return lambda p, t, i: [f(p, t, i) for f in fills]

    return [
        ("key, a one-field hash (state)", key({"state": "PENDING"})),
        ("key: name, state, created_at", key(RECORD)),
        ("key: name, state, created_at, score", with_score),
        ("pending zset entry", zset),
        ("pending list entry", listed),
        ("key (state only) + zset entry", both(key({"state": "PENDING"}), zset)),
        ("key + zset entry, score in the record", both(with_score, zset)),
        ("key + zset entry, no score", both(key(RECORD), zset)),
        ("key + list entry, no score", both(key(RECORD), listed)),
        ("per-queue hash of JSON records + zset", both(hashed, zset)),
        ("per-queue hash of JSON records + list", both(hashed, listed)),
    ]


def layouts(n: int) -> list[tuple[str, float]]:
    out = []
    with LocalRedis(appendonly=False) as server:
        app = Orchestrator(server.url)
        r = app.redis
        ids = [new_task_id() for _ in range(n)]
        for what, fill in _layouts():
            r.flushall()
            m0 = int(r.info("memory")["used_memory"])
            for start in range(0, n, 1000):
                pipe = r.pipeline(transaction=False)
                for i in range(start, min(start + 1000, n)):
                    fill(pipe, ids[i], i)
                pipe.execute()
            out.append((what, (int(r.info("memory")["used_memory"]) - m0) / n))
        app.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=100_000, help="tasks to enqueue (default 100,000)")
    parser.add_argument("--payload", choices=sorted(PAYLOADS), default="small",
                        help="small: args ['a.png'], kwargs {'width': 200}; none: no arguments (the bench's no-op)")
    parser.add_argument("--one-by-one", action="store_true", help="one enqueue call per task, as the bench does")
    parser.add_argument("--layouts", action="store_true",
                        help="the floor of other layouts instead: plain commands, no engine")
    a = parser.parse_args()
    if a.layouts:
        print(f"{a.n:,} tasks written with plain commands, used_memory delta / task:")
        for what, per_task in layouts(a.n):
            print(f"  {what:40s} {per_task:7.1f} B")
        return
    out = measure(a.n, a.payload, a.one_by_one)
    print(f"{a.n:,} tasks, payload {a.payload}:")
    print(f"  used_memory delta / task   {out['per_task']:7.1f} B")
    print(f"  task key MEMORY USAGE      {out['task_key']:7.0f} B")
    print(f"  pending zset / task        {out['pending']:7.1f} B")
    print(f"  event stream / task        {out['events']:7.1f} B  (capped: {out['event_entry']:.0f} B per entry)")
    print(f"  rest / task                {out['rest']:7.1f} B")


if __name__ == "__main__":
    main()
