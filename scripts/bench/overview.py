"""What the overview, GET /api/v1/queues and a /metrics scrape cost with 100 queues and 1,000,000 tasks.

Issue #14: the overview costs O(queues), not O(tasks): under 200 ms of server time with
100 queues and 1,000,000 tasks. Starts a private redis-server (never 6379), enqueues
``--tasks`` tasks (default 1,000,000) over ``--queues`` queues (default 100) with
``enqueue_many`` in batches of 1,000, registers ``--workers`` live workers per queue and
runs a few tasks to an end on each, then times, ``--repeat`` times each (median and
worst): ``app.overview()``, ``GET /api/v1/queues`` (the FastAPI app in process, so the
figure is the server's time: the operator call, the models and the JSON), the dashboard's
overview page ``GET /`` (the same, plus each queue's last hour of series and the HTML), one /metrics
scrape (``server.metrics.exposition``), and the scheduler's ``rollup`` call (a queue's
first, which backfills 2 hours, and a steady one). Also prints the Redis commands one
overview sends (INFO commandstats) beside the same figure with 1,000 tasks in all.

    .venv/bin/python scripts/bench/overview.py                   # about two minutes
    .venv/bin/python scripts/bench/overview.py --tasks 100000
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

with warnings.catch_warnings():  # starlette's notice about httpx, the only client the project ships
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from orchestrator import Orchestrator, Settings
from orchestrator.redis_local import LocalRedis
from orchestrator.script_calls import run
from orchestrator.server.app import create_app
from orchestrator.server.auth import AuthConfig
from orchestrator.server.metrics import exposition

TOKEN = "bench-token-overview-0123456789"


def load(app: Orchestrator, queues: list[str], tasks: int) -> float:
    """``tasks`` spread evenly over ``queues``, in batches of at most 1,000."""
    started = time.perf_counter()
    per_queue = tasks // len(queues)
    for queue in queues:
        for first in range(0, per_queue, 1000):
            batch = [app.request(f"jobs:task{(first + i) % 20}", [first + i], queue=queue)
                     for i in range(min(1000, per_queue - first))]
            app.enqueue_many(batch)
    return time.perf_counter() - started


def activity(app: Orchestrator, queues: list[str], workers: int) -> None:
    """Live workers on each queue and a few tasks run to an end (so counts and histograms hold data)."""
    for queue in queues:
        t = app._scripts(queue)
        for w in range(workers):
            run(app.redis, t.heartbeat(f"bench-{w}", 600_000, {"running": w + 1, "concurrency": 8}, ()))
        for lease in run(app.redis, t.claim("bench-0", 3, 600_000)):
            run(app.redis, t.complete(lease.task_id, lease.token, b"null", 60_000))


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """Median and worst milliseconds of ``repeat`` calls (after one to warm up)."""
    fn()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), max(times)


def commands(r: Any) -> int:
    return sum(int(v["calls"]) for k, v in r.info("commandstats").items() if k != "cmdstat_info")


def overview_commands(app: Orchestrator) -> int:
    app.redis.config_resetstat()
    app.overview()
    return commands(app.redis)


def measure(label: str, tasks: int, n_queues: int, workers: int, repeat: int) -> None:
    server = LocalRedis(appendonly=False).start()
    try:
        app = Orchestrator(settings=Settings(redis_url=server.url))
        queues = [f"q{i:03d}" for i in range(n_queues)]
        seconds = load(app, queues, tasks)
        activity(app, queues, workers)
        memory = int(app.redis.info("memory")["used_memory"]) / 2**20
        print(f"{label}: {tasks:,} tasks in {n_queues} queues loaded in {seconds:.1f} s; Redis {memory:.0f} MiB")
        overview = app.overview()
        assert len(overview) == n_queues
        assert sum(sum(o.counts.values()) for o in overview) == tasks // n_queues * n_queues
        print("  app.overview()            median {:.1f} ms, worst {:.1f} ms".format(*timed(app.overview, repeat)))
        print(f"    Redis commands per overview: {overview_commands(app)} (3 round trips)")
        http = TestClient(create_app(app, auth=AuthConfig(token=TOKEN)), base_url="http://127.0.0.1")
        http.headers["Authorization"] = f"Bearer {TOKEN}"

        def api() -> None:
            response = http.get("/api/v1/queues")
            assert response.status_code == 200, response.text
            assert len(response.json()["queues"]) == n_queues

        print("  GET /api/v1/queues        median {:.1f} ms, worst {:.1f} ms".format(*timed(api, repeat)))

        def page() -> None:
            response = http.get("/", headers={"Accept": "text/html"})
            assert response.status_code == 200 and response.text.count('data-testid="count-') == 7 * n_queues

        print("  GET / (dashboard page)    median {:.1f} ms, worst {:.1f} ms".format(*timed(page, repeat)))
        print("  /metrics scrape           median {:.1f} ms, worst {:.1f} ms".format(
            *timed(lambda: exposition(app), max(3, repeat // 4))))
        t = app._scripts(queues[0])
        started = time.perf_counter()
        run(app.redis, t.rollup(8))
        first = (time.perf_counter() - started) * 1000
        print(f"  rollup call (first: backfills 2 h) {first:.2f} ms; steady "
              "median {:.2f} ms".format(timed(lambda: run(app.redis, t.rollup(8)), repeat)[0]))
        app.close()
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--queues", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2, help="live workers per queue")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    measure("small", 1_000, args.queues, args.workers, args.repeat)
    measure("large", args.tasks, args.queues, args.workers, args.repeat)


if __name__ == "__main__":
    main()
