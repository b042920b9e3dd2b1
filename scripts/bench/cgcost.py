"""Instructions per script call (valgrind callgrind), this checkout against another commit, A/B.

    .venv/bin/python scripts/bench/cgcost.py --baseline main [-n 200] [--phase complete --keep DIR]

luacost.py's workload (enqueue one and 100 at a time, claim 10, heartbeat 10, complete,
fail, promote 100, claim again, release 10, reap 100, cancel) on one private redis-server run
under ``valgrind --tool=callgrind``, twice per variant in the order base, new, new, base. Each
phase is counted on its own (``callgrind_control --zero`` before, ``--dump`` after): the
instructions the whole server executed (request parsing, the interpreter, the commands the
script ran, replies) divided by the phase's script calls. Unlike timing, the count does not
move with other load on the machine: a change of 1% is visible. Both variants get the same
KEYS and ARGV (this checkout builds every call); only the script sources differ.

``--phase P`` runs REV's scripts in phase P only (every other phase uses this checkout's in
both variants, so P starts from the same data); ``--keep DIR`` saves P's callgrind dump per
variant for ``callgrind_annotate``. Needs valgrind; takes 2-5 minutes (valgrind runs Redis
some 50 times slower).
"""

from __future__ import annotations

import argparse
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import luacost as lc  # puts this checkout on sys.path
from redis import Redis

from orchestrator import script_calls as sc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Callgrind:
    """redis-server under callgrind, and its instruction count since the last zero."""

    def __init__(self, outdir: Path) -> None:
        self.outdir = outdir
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={outdir}/cg.%p",
             "redis-server", "--port", str(self.port), "--save", "", "--appendonly", "no", "--hz", "1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = Redis(port=self.port, socket_timeout=900)
        for _ in range(600):
            try:
                self.client.ping()
                break
            except Exception:
                time.sleep(0.1)
        else:
            self.close()
            raise SystemExit("redis-server under valgrind did not start")
        self.last: Path | None = None

    def ctl(self, *args: str) -> None:
        subprocess.run(["callgrind_control", *args, str(self.proc.pid)], check=True, capture_output=True)

    def zero(self) -> None:
        self.ctl("--zero")

    def dump(self) -> int:
        """Dump the counts since the last zero; the total of instructions executed."""
        pattern = f"cg.{self.proc.pid}.*"
        before = set(self.outdir.glob(pattern))
        self.ctl("--dump")
        for _ in range(100):
            new = set(self.outdir.glob(pattern)) - before
            if new:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("callgrind wrote no dump")
        self.last = new.pop()
        for _ in range(50):  # the dump may still be being written
            m = re.search(r"^(?:summary|totals): (\d+)", self.last.read_text(), re.M)
            if m:
                return int(m.group(1))
            time.sleep(0.1)
        raise RuntimeError(f"no total in {self.last}")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)


class CGRunner(lc.Runner):
    """luacost's Runner, each phase counted in instructions instead of timed."""

    def __init__(self, cg: Callgrind, scripts: dict[str, sc.Script], tag: str, new: dict[str, sc.Script],
                 only: str, keep: Path | None) -> None:
        super().__init__(cg.client, scripts)
        self.cg, self.tag, self.new, self.only, self.keep = cg, tag, new, only, keep
        self.current = ""

    def run(self, calls: list[sc.Call[Any]], chunk: int = 50) -> list[Any]:
        if self.only and self.current != self.only:  # the other phases: this checkout's scripts
            saved, self.scripts = self.scripts, self.new
            try:
                return super().run(calls, chunk)
            finally:
                self.scripts = saved
        return super().run(calls, chunk)

    def phase(self, label: str, calls: list[sc.Call[Any]]) -> list[Any]:
        self.current = label
        for name in {c.script.name for c in calls if c.script}:  # loaded outside the count
            self.client.script_load(self.scripts[name].source)
            self.client.script_load(self.new[name].source)
        self.cg.zero()
        out = self.run(calls)
        ir = self.cg.dump()
        if self.keep and label == self.only and self.cg.last:
            shutil.copy(self.cg.last, self.keep / f"{self.tag}-{label.replace(' ', '_')}.cg")
        self.rows[label].append((ir / max(len(calls), 1), 0, len(calls), 0))
        return out


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--baseline", default="main", help="the commit to compare with (same KEYS and ARGV)")
    p.add_argument("-n", type=int, default=200, help="tasks per workload (a multiple of 200)")
    p.add_argument("--phase", default="", help="run REV's scripts in this phase only (e.g. complete)")
    p.add_argument("--keep", type=Path, help="with --phase: save its callgrind dump per variant here")
    a = p.parse_args()
    if a.keep and not a.phase:
        p.error("--keep needs --phase")
    variants = {"base": lc.baseline_sources(a.baseline), "new": {n: sc.script(n).source for n in sc.SCRIPT_NAMES}}
    new = lc.as_scripts(variants["new"])
    if a.keep:
        a.keep.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cgcost-") as tmp:
        cg = Callgrind(Path(tmp))
        try:
            runners = {k: CGRunner(cg, lc.as_scripts(v), k, new, a.phase, a.keep) for k, v in variants.items()}
            for k in ("base", "new", "new", "base"):
                lc.workload(runners[k], a.n)
                print(f"{k} done", file=sys.stderr)
        finally:
            cg.close()
    print("Instructions per script call (callgrind: the whole redis-server, request handling included),")
    print(f"mean of 2 runs each; base = {a.baseline}, ratio = new / base")
    print(f"{'phase':16} {'kIr base':>9} {'new':>9} {'ratio':>6}")
    means: dict[str, tuple[float, float]] = {}
    for label, rows in runners["base"].rows.items():
        if not rows[0][2]:
            print(f"{label:16} {'(no calls at this -n)':>26}")
            continue
        x = sum(r[0] for r in rows) / len(rows) / 1000
        ys = runners["new"].rows[label]
        y = sum(r[0] for r in ys) / len(ys) / 1000
        print(f"{label:16} {x:9.1f} {y:9.1f} {y / max(x, 1e-9):6.3f}")
        means[label] = (x, y)
    if all(k in means for k in ("enqueue x1", "claim x10", "complete")):  # a task: enqueue, claim / 10, complete
        x, y = (means["enqueue x1"][i] + means["claim x10"][i] / 10 + means["complete"][i] for i in (0, 1))
        print(f"{'per task':16} {x:9.1f} {y:9.1f} {y / x:6.3f}  (enqueue x1 + claim x10 / 10 + complete)")


if __name__ == "__main__":
    main()
