"""What durability="replicated" costs per enqueue: one enqueue at a time, fast against
replicated, on a primary with one live replica (``LocalSentinel``'s; the client talks to
the primary directly so only the WAIT differs).

    .venv/bin/python scripts/bench/durability.py [-n 2000] [--reps 5]

Each repetition runs ``n`` sequential enqueues per variant, alternating which goes first;
the table shows the median over repetitions of each variant's median and 99th percentile
latency (microseconds) and its rate.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from orchestrator import Orchestrator, Settings  # noqa: E402
from orchestrator.local_sentinel import LocalSentinel  # noqa: E402


def run(app: Orchestrator, n: int, tag: str) -> list[float]:
    out = []
    for i in range(n):
        started = time.perf_counter()
        app.enqueue("bench:noop", args=[i], key=f"{tag}-{i}")
        out.append((time.perf_counter() - started) * 1e6)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    with LocalSentinel() as sentinel:
        url = f"redis://127.0.0.1:{sentinel.primary_port()}/0"
        apps = {
            "fast": Orchestrator(settings=Settings(redis_url=url)),
            "replicated": Orchestrator(settings=Settings(redis_url=url, durability="replicated")),
        }
        for app in apps.values():
            run(app, 200, f"warm-{id(app)}")
        rows: dict[str, list[tuple[float, float, float]]] = {name: [] for name in apps}
        for rep in range(args.reps):
            order = list(apps) if rep % 2 == 0 else list(reversed(apps))
            for name in order:
                started = time.perf_counter()
                lat = sorted(run(apps[name], args.n, f"{name}-{rep}"))
                rate = args.n / (time.perf_counter() - started)
                rows[name].append((lat[len(lat) // 2], lat[int(len(lat) * 0.99)], rate))
        print(f"one enqueue at a time, {args.n} per variant, median of {args.reps} repetitions")
        print(f"{'durability':<12}{'p50 us':>10}{'p99 us':>10}{'enqueues/s':>12}")
        for name, found in rows.items():
            p50, p99, rate = (statistics.median(col) for col in zip(*found, strict=True))
            print(f"{name:<12}{p50:>10.0f}{p99:>10.0f}{rate:>12.0f}")
        for app in apps.values():
            app.close()


if __name__ == "__main__":
    main()
