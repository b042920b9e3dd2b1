"""Redis memory per queued task, and where it goes (issue #18, point 3).

    .venv/bin/python scripts/bench/memory.py [-n 100000] [--payload small|none] [--one-by-one]

One private redis-server (no persistence). Enqueues N tasks into one queue (the bulk API,
or one call each with --one-by-one) and prints: INFO used_memory delta / N; the MEMORY
USAGE (SAMPLES 0) of one task's key; the pending zset's and the event stream's share per
task (their MEMORY USAGE / N); the rest (idempotency entries, stats, metrics, allocator
slack) per task; and one record as redis-cli HGETALL shows it. The scripts are loaded and
the queue registered before the first reading, so they count in no figure. Owns the
measurement only; the bench's memory column (``scripts/bench/run``, 20,000 no-op tasks one
call each) is the cross-library one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from orchestrator import Orchestrator, TaskRequest  # noqa: E402
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
               "rest": per_task - task - pending / n - events / n}
        record = r.hgetall(keys.task(task_id))
        print(f"HGETALL {keys.task(task_id)}:")
        for field, value in record.items():
            print(f"  {_text(field)} = {_text(value)}")
        print(f"  ({len(record)} fields, {sum(len(f) + len(v) for f, v in record.items())} bytes of fields and values)")
        app.close()
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=100_000, help="tasks to enqueue (default 100,000)")
    parser.add_argument("--payload", choices=sorted(PAYLOADS), default="small",
                        help="small: args ['a.png'], kwargs {'width': 200}; none: no arguments (the bench's no-op)")
    parser.add_argument("--one-by-one", action="store_true", help="one enqueue call per task, as the bench does")
    a = parser.parse_args()
    out = measure(a.n, a.payload, a.one_by_one)
    print(f"{a.n:,} tasks, payload {a.payload}:")
    print(f"  used_memory delta / task   {out['per_task']:7.1f} B")
    print(f"  task key MEMORY USAGE      {out['task_key']:7.0f} B")
    print(f"  pending zset / task        {out['pending']:7.1f} B")
    print(f"  event stream / task        {out['events']:7.1f} B")
    print(f"  rest / task                {out['rest']:7.1f} B")


if __name__ == "__main__":
    main()
