"""What one /metrics scrape costs with many tasks queued (issue #13: O(queues x names), not O(tasks)).

Starts a private redis-server (never 6379), enqueues ``--tasks`` tasks (default 1,000,000)
with ``enqueue_many`` in batches of 1,000 over ``--names`` task names, runs ``--finish``
of them through claim and complete so the histograms hold data, then times
``server.metrics.exposition`` ``--scrapes`` times and prints the median, the body size
and the Redis commands one scrape sends (INFO commandstats), beside the same figures for
a queue of 1,000 tasks: equal command counts show the scrape does not grow with the queue.

    .venv/bin/python scripts/metrics_scrape_cost.py            # about a minute
    .venv/bin/python scripts/metrics_scrape_cost.py --tasks 100000
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from orchestrator import Orchestrator, Settings
from orchestrator.redis_local import LocalRedis
from orchestrator.script_calls import run
from orchestrator.server.metrics import exposition


def load(app: Orchestrator, tasks: int, names: int) -> float:
    started = time.perf_counter()
    for first in range(0, tasks, 1000):
        batch = [app.request(f"jobs:task{(first + i) % names}", [first + i]) for i in range(min(1000, tasks - first))]
        app.enqueue_many(batch)
    return time.perf_counter() - started


def finish(app: Orchestrator, n: int) -> None:
    t = app._scripts("default")
    done = 0
    while done < n:
        leases = run(app.redis, t.claim("bench-worker", min(100, n - done), 60_000))
        for lease in leases:
            run(app.redis, t.complete(lease.task_id, lease.token, b"null", 60_000))
        done += len(leases)


def commands(r: Any) -> int:
    return sum(int(v["calls"]) for k, v in r.info("commandstats").items() if k != "cmdstat_info")


def measure(app: Orchestrator, scrapes: int) -> tuple[float, int, int]:
    """Median seconds per scrape, body bytes, Redis commands per scrape."""
    exposition(app)  # warm: scripts, connections
    times = []
    for _ in range(scrapes):
        started = time.perf_counter()
        body, _ = exposition(app)
        times.append(time.perf_counter() - started)
    app.redis.config_resetstat()
    exposition(app)
    return statistics.median(times), len(body), commands(app.redis)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--names", type=int, default=50)
    parser.add_argument("--finish", type=int, default=10_000)
    parser.add_argument("--scrapes", type=int, default=20)
    options = parser.parse_args()
    with LocalRedis(appendonly=False) as server:
        app = Orchestrator(settings=Settings(redis_url=server.url))
        small = Orchestrator(settings=Settings(redis_url=server.url, prefix="small"))
        load(small, 1000, options.names)
        finish(small, min(options.finish, 500))
        loaded = load(app, options.tasks, options.names)
        finish(app, options.finish)
        pending = app.queue("default").counts()["pending"]
        used = app.redis.info("memory")["used_memory_human"]
        print(f"loaded {options.tasks:,} tasks over {options.names} names in {loaded:.1f} s "
              f"({options.tasks / loaded:,.0f}/s); {pending:,} pending; Redis memory {used}")
        for label, which in (("1,000 tasks", small), (f"{options.tasks:,} tasks", app)):
            seconds, size, sent = measure(which, options.scrapes)
            print(f"scrape with {label} queued: median {seconds * 1000:.1f} ms over {options.scrapes}, "
                  f"{size:,} bytes, {sent} Redis commands")
        app.close()
        small.close()


if __name__ == "__main__":
    main()
