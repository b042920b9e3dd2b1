"""The worker's own CPU per task over a drain, this checkout against a commit, A/B interleaved.

    .venv/bin/python scripts/bench/workercpu.py --baseline main [--kind incr] [--variant thread]
        [--reps 5] [-n 20000] [--window 4] [-- orch worker options, e.g. --concurrency 100]

On a busy 2-core machine a drain's rate follows the other load; the CPU a worker process
spends per task moves much less, and it is what bounds one worker on a quiet machine (one
process, one core, the GIL). Each repetition, for each variant in turn (alternating which
goes first): a private redis-server, ``n`` tasks of ``--kind`` (the bench's jobs:
``incr`` one Redis round trip of its own, ``noop`` a file append) bulk-enqueued, one
``orch worker`` of the variant, and, once it runs, ``--window`` seconds over which the
worker's CPU (/proc utime + stime), Redis's CPU and the tasks done are counted. Prints per
variant the median worker µs per task, Redis µs per task and tasks/s, and each
repetition's figures. The baseline runs from ``scripts/bench/.baseline/<sha>`` (the same
venv ``run --baseline`` makes). Does not touch the table of ``run``. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
import venvs
from venvs import BENCH

from orchestrator.redis_local import LocalRedis

LINE = 20  # peers._common.LINE: one fixed-width line per task in the sink


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def redis_cpu(r: redis.Redis) -> float:
    info = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def one(python: Path, kind: str, variant: str, n: int, window: float, extra: list[str]) -> dict[str, float]:
    """One drain with one variant's worker; its worker and Redis CPU per task over the window."""
    server = LocalRedis(appendonly=False).start()
    env = dict(os.environ, PYTHONPATH=str(BENCH), BENCH_REDIS_URL=server.url, ORCH_REDIS_URL=server.url)
    with tempfile.TemporaryDirectory(prefix="workercpu-") as tmp:
        sink = Path(tmp) / "sink"
        sink.write_bytes(b"")
        env["BENCH_SINK"] = str(sink)
        fill = ("from peers import orchestrator as o; p = o.Producer(sys.argv[1], sys.argv[2]); "
                "p.many(sys.argv[3], int(sys.argv[4])); p.close()")
        subprocess.run([str(python), "-c", "import sys; " + fill, server.url, variant, kind, str(n)],
                       cwd=BENCH, env=env, check=True)
        r = redis.Redis.from_url(server.url)
        orch = str(python.parent / "orch")
        worker = subprocess.Popen([orch, "worker", "--app", "peers.orchestrator", *extra], cwd=BENCH, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while sink.stat().st_size < 200 * LINE:  # started, imports and first claims behind it
                if worker.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the worker did not start (exit code {worker.returncode})")
                time.sleep(0.01)
            t0, s0, w0, c0 = time.monotonic(), sink.stat().st_size, cpu_seconds(worker.pid), redis_cpu(r)
            time.sleep(window)
            t1, s1, w1, c1 = time.monotonic(), sink.stat().st_size, cpu_seconds(worker.pid), redis_cpu(r)
        finally:
            worker.kill()
            worker.wait()
            r.close()
            server.stop()
    done = (s1 - s0) // LINE
    if done >= n - 200 * 2:
        print(f"note: the drain ran out of tasks within the window; raise -n (done {done} of {n})", file=sys.stderr)
    return {"worker_us": (w1 - w0) / done * 1e6, "redis_us": (c1 - c0) / done * 1e6, "rate": done / (t1 - t0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default=None, help="the commit to compare with (default: none)")
    parser.add_argument("--kind", default="incr", choices=["incr", "noop"])
    parser.add_argument("--variant", default="thread", choices=["thread", "async"], help="def or async def tasks")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("-n", type=int, default=20_000, help="tasks queued per drain (enough for the window)")
    parser.add_argument("--window", type=float, default=4.0, help="seconds measured per drain")
    parser.add_argument("extra", nargs="*", help="after --: options for orch worker")
    a = parser.parse_args()
    variants = {"new": Path(sys.executable)}
    if a.baseline:
        sha = venvs.resolve(a.baseline)
        reason = venvs.ensure_baseline(sha)
        if reason:
            sys.exit(f"baseline {sha}: {reason}")
        variants[f"base {sha}"] = venvs.baseline_python(sha)
    got: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    for rep in range(a.reps):
        order = list(variants) if rep % 2 == 0 else list(reversed(variants))
        for name in order:
            got[name].append(one(variants[name], a.kind, a.variant, a.n, a.window, a.extra))
            print(f"rep {rep + 1}/{a.reps} {name}: " + ", ".join(f"{k} {v:,.0f}" for k, v in got[name][-1].items()),
                  file=sys.stderr)
    head = venvs.describe_head()
    print(f"{a.kind} tasks, {'def' if a.variant == 'thread' else 'async def'}, orch worker {' '.join(a.extra)}; "
          f"medians of {a.reps} (new = {head}); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for name, runs in got.items():
        print(f"{name:>14}: worker {statistics.median(r['worker_us'] for r in runs):6.0f} µs/task  "
              f"redis {statistics.median(r['redis_us'] for r in runs):6.0f} µs/task  "
              f"{statistics.median(r['rate'] for r in runs):7,.0f} tasks/s   "
              f"(worker µs: {', '.join(format(r['worker_us'], '.0f') for r in runs)})")


if __name__ == "__main__":
    main()
