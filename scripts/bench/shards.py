"""A sharded queue on a 3-master Redis Cluster: each master's share of Redis CPU, and throughput, K=1 vs K=3.

    .venv/bin/python scripts/bench/shards.py [-n 20000] [--workers 2] [--concurrency 10] [--repeat 2]

Starts a local cluster (3 masters, 3 replicas: ``redis_local.LocalCluster``). For each K:
declares ``hot`` with K shards, enqueues ``-n`` tasks (``demo:work`` with 0 ms: returns at
once) with no key (round robin), then starts ``--workers`` ``orch worker -q hot`` processes
and times the drain (from 5% done, past the workers' start-up, to the last completion,
polled on the summed stats). Redis CPU
(INFO cpu, user + sys) is read on every master before and after the drain: each master's
share of the masters' total, and the spread (max - min share). The load average (1 min)
before and after each run is printed too: this machine has 2 cores, and the workers, the
producer and six redis-servers share them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from redis import Redis  # noqa: E402

from orchestrator import Orchestrator, Settings  # noqa: E402
from orchestrator.redis_local import LocalCluster  # noqa: E402

TASKS = "orchestrator.demo.tasks"  # demo:work returns its argument after sleeping it (0: at once)


def cpu_s(port: int) -> float:
    with Redis(port=port) as r:
        info = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def run(cluster: LocalCluster, shards: int, n: int, workers: int, concurrency: int) -> dict[str, object]:
    cluster.flush()
    app = Orchestrator(settings=Settings(redis_url=cluster.url))
    app.declare_queue("hot", shards=shards)
    for start in range(0, n, 1000):
        app.enqueue_many(app.request("demo:work", [0], queue="hot") for _ in range(min(1000, n - start)))
    masters = sorted(cluster.masters(), key=lambda node: node.port)
    before = {m.port: cpu_s(m.port) for m in masters}
    load_before = os.getloadavg()[0]
    env = {**os.environ, "ORCH_REDIS_URL": cluster.url}
    args = [sys.executable, "-m", "orchestrator", "worker", "--app", TASKS, "-q", "hot",
            "--concurrency", str(concurrency), "--idle-wait", "0.2"]
    procs = [subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for _ in range(workers)]
    try:
        first = n // 20  # timed from the 5% mark (the workers' start-up left out) to the last
        while (done := app.stats(["hot"])[0].counts["success"]) < first:
            time.sleep(0.01)
        started, at = time.monotonic(), done
        while app.stats(["hot"])[0].counts["success"] < n:
            time.sleep(0.05)
        took = time.monotonic() - started
        used = {m.port: cpu_s(m.port) - before[m.port] for m in masters}
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
        app.close()
    total = sum(used.values())
    shares = [used[m.port] / total for m in masters]
    return {"shards": shards, "tasks_per_s": (n - at) / took, "seconds": took, "shares": shares,
            "spread": max(shares) - min(shares), "cpu_s": total, "load": (load_before, os.getloadavg()[0])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20_000, help="tasks per run")
    parser.add_argument("--workers", type=int, default=2, help="orch worker processes")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=2, help="runs per K, interleaved")
    parser.add_argument("--shards", default="1,3", help="the K to compare")
    a = parser.parse_args()
    with LocalCluster() as cluster:
        print(f"cluster {cluster.url}; {os.cpu_count()} cores; {a.workers} workers x {a.concurrency}; n={a.n}")
        for rep in range(a.repeat):
            for k in (int(x) for x in a.shards.split(",")):
                r = run(cluster, k, a.n, a.workers, a.concurrency)
                shares = " ".join(f"{s:5.1%}" for s in r["shares"])  # type: ignore[attr-defined]
                load = r["load"]
                print(f"run {rep + 1} K={k}: {r['tasks_per_s']:7.0f} tasks/s ({r['seconds']:.1f} s); masters' CPU "
                      f"shares {shares} (spread {r['spread']:.1%}), {r['cpu_s']:.1f} CPU s in Redis; "
                      f"load {load[0]:.1f} -> {load[1]:.1f}")  # type: ignore[index]


if __name__ == "__main__":
    main()
