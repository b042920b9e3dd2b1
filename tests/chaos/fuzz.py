"""The long run of the hostile-Redis fuzzer: ``scripts/fuzz --minutes N``.

Owns repeating ``tests/chaos/test_hostile.py`` with fresh Hypothesis seeds (a batch of
rounds per run, each run on a new redis-server and new processes) until the time is up
or a run fails, and printing what ran. Does not fuzz anything itself: the test does.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="stop starting runs after this long (default 10)")
    parser.add_argument("--examples", type=int, default=50, help="rounds per run (default 50)")
    parser.add_argument("--seed", type=int, default=int(time.time()), help="Hypothesis seed of the first run")
    args = parser.parse_args(argv)
    stop = time.monotonic() + args.minutes * 60
    env = {**os.environ, "ORCH_FUZZ_EXAMPLES": str(args.examples), "ORCH_FUZZ_NO_SHRINK": "1"}
    runs = 0
    began = time.monotonic()
    while time.monotonic() < stop:
        seed = args.seed + runs
        command = [sys.executable, "-m", "pytest", "tests/chaos/test_hostile.py", "-q", "-x", "-p", "no:randomly",
                   "-p", "no:cacheprovider", f"--hypothesis-seed={seed}", f"--timeout={60 + 10 * args.examples}"]
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        runs += 1
        last = (result.stdout.strip().splitlines() or ["?"])[-1]
        print(f"[fuzz] run {runs} seed {seed}: {last}", flush=True)
        if result.returncode != 0:
            errors = [line for line in result.stdout.splitlines() if line.startswith("E ")]
            print("\n".join(errors[:80]), result.stdout[-8_000:], result.stderr[-5_000:], sep="\n")
            print(f"[fuzz] FAILED: replay with ORCH_FUZZ_EXAMPLES={args.examples} ORCH_FUZZ_NO_SHRINK=1 "
                  f"pytest tests/chaos/test_hostile.py --hypothesis-seed={seed}")
            return 1
    minutes = (time.monotonic() - began) / 60
    print(f"[fuzz] {runs} runs x {args.examples} rounds, {runs * args.examples} rounds in {minutes:.1f} min "
          f"(seeds {args.seed}..{args.seed + runs - 1}): every spoiled queue behaved")
    return 0


if __name__ == "__main__":
    sys.exit(main())
