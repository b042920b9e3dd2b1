"""How soon ``handle.result()`` returns after its task ends, and what the notice costs Redis.

    .venv/bin/python scripts/bench/result_wait.py [-n 200]

One private redis-server and one ``orch worker`` process (thread pool) running a task that
returns at once. The producer enqueues a task, waits for it with ``result()`` and notes the
time it returned; the delay is that time minus the task's ``completed_at`` (both the
host's clock: Redis TIME and ``time.time()``, in ms, so a delay reads as 0 to 1 ms more
than it was). Three ways of waiting, one task at a time: the notice (watch.lua, then the
task's channel), polling (the channel refused, as for an ACL user without it), and the
notice with the polling fallback only (a lost message: FALLBACK_POLL). Then Redis's CPU per
task (INFO cpu): over 2,000 tasks drained by the worker with nobody waiting (no message is
sent: compare with ``luacost.py --baseline`` for the scripts alone), and per task waited
for one at a time, with the notice (SSUBSCRIBE, watch.lua, SUNSUBSCRIBE on a kept pub/sub
connection, SPUBLISH when the task was still running) and by polling.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from redis import Redis  # noqa: E402

from orchestrator import Orchestrator, Settings, TaskHandle  # noqa: E402
from orchestrator.redis_local import LocalRedis  # noqa: E402

TASKS = "orchestrator.demo.tasks"  # demo:work returns its argument after sleeping it (0: at once)


def cpu_us(r: Redis) -> float:
    info = r.info("cpu")
    return (float(info["used_cpu_user"]) + float(info["used_cpu_sys"])) * 1e6


def delays(app: Orchestrator, n: int) -> list[float]:
    out = []
    for _ in range(n):
        handle = app.enqueue("demo:work", [0])
        handle.result(timeout=30)
        returned = time.time() * 1000
        completed = handle.info().completed_at
        assert completed is not None
        out.append(returned - completed)
    return out


def summary(name: str, values: list[float]) -> str:
    values = sorted(values)
    p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
    return f"{name:<34} median {statistics.median(values):6.2f} ms   p99 {p99:7.2f} ms   max {values[-1]:7.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="tasks per way of waiting")
    parser.add_argument("--drain", type=int, default=2000, help="tasks per Redis CPU phase")
    a = parser.parse_args()
    with LocalRedis(appendonly=False) as server:
        r = Redis(port=server.port)
        app = Orchestrator(settings=Settings(redis_url=server.url))
        env = {**os.environ, "ORCH_REDIS_URL": server.url}
        worker = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "worker", "--app", TASKS, "--concurrency", "10"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            delays(app, 20)  # warm up: worker started, scripts loaded
            print(summary("notice (watch + channel)", delays(app, a.n)))
            listen = TaskHandle._listen
            TaskHandle._listen = lambda self: None  # type: ignore[method-assign]
            print(summary("polling (no channel rights)", delays(app, a.n)))
            TaskHandle._listen = listen  # type: ignore[method-assign]
            watch = TaskHandle._watch
            TaskHandle._watch = lambda self: self.status()  # type: ignore[method-assign]  # subscribed, never marked
            print(summary("lost notice (1 s fallback look)", delays(app, max(5, a.n // 20))))
            TaskHandle._watch = watch  # type: ignore[method-assign]

            r.config_resetstat()
            before = cpu_us(r)
            app.enqueue_many([app.request("demo:work", [0]) for _ in range(a.drain)])
            while r.zcard(app.keys("default").done) < a.drain + 20 + 2 * a.n + max(5, a.n // 20):
                time.sleep(0.01)
            used = cpu_us(r) - before
            publishes = r.info("commandstats").get("cmdstat_spublish", {}).get("calls", 0)
            print(f"Redis CPU per task, nobody waits:        {used / a.drain:6.1f} us   (SPUBLISH calls: {publishes})")
            for label, poll in (("waited for, notice", False), ("waited for, polling", True)):
                if poll:
                    TaskHandle._listen = lambda self: None  # type: ignore[method-assign]
                before = cpu_us(r)
                delays(app, a.n)
                used = cpu_us(r) - before
                print(f"Redis CPU per task, {label}: {used / a.n:6.1f} us   (one at a time: enqueue, result, info)")
            TaskHandle._listen = listen  # type: ignore[method-assign]
        finally:
            worker.terminate()
            worker.wait(30)
            app.close()


if __name__ == "__main__":
    main()
