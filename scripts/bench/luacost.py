"""Redis-side cost of each Lua script: this checkout against another commit, A/B interleaved.

    .venv/bin/python scripts/bench/luacost.py --baseline main [--reps 7] [-n 1000] [--detail]

One private redis-server (no persistence). Each repetition runs the same fixed workload once
per variant, alternating which goes first: enqueue one task per call, enqueue 100 per call,
claim 10 at a time, heartbeat 10 leases, complete half, fail the other half (retry), promote
100 at a time, claim again, release 10 at a time, reap 100 at a time, cancel. Each phase is
timed by Redis itself: ``CONFIG RESETSTAT`` before, ``INFO commandstats`` and ``INFO cpu``
after, giving per script call the EVALSHA usec, its ``lua`` part (the usec outside the
commands the script ran: the interpreter, argument and reply handling) and the server's CPU
usec. The table shows the lowest of the repetitions: other load on the machine only adds.
Both variants get the same KEYS and ARGV (this checkout's transitions.py builds every call,
so REV must take the same ones); only the script sources differ, REV's built by its own
transitions.py from a ``git archive``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from collections import defaultdict
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from redis import Redis  # noqa: E402

from orchestrator import script_calls as sc  # noqa: E402
from orchestrator import transitions as tr  # noqa: E402
from orchestrator.keys import QueueKeys  # noqa: E402
from orchestrator.redis_local import LocalRedis  # noqa: E402

DUMP = (  # script_calls.py since ef649d3 (transitions.py before)
    "import json, sys\ntry:\n    from orchestrator import script_calls as t\n"
    "except ImportError:\n    from orchestrator import transitions as t\n"
    "json.dump({n: t.script(n).source for n in t.SCRIPT_NAMES}, sys.stdout)"
)
Row = tuple[float, float, int, float]  # evalsha usec, its lua part, calls, server CPU usec


def baseline_sources(rev: str) -> dict[str, str]:
    archive = ["git", "-C", str(ROOT), "archive", rev, "orchestrator"]
    tree = subprocess.run(archive, check=True, capture_output=True).stdout
    tmp = tempfile.mkdtemp(prefix="luacost-")
    with tarfile.open(fileobj=BytesIO(tree)) as tar:
        tar.extractall(tmp)  # our own repository's files
    env = {**os.environ, "PYTHONPATH": tmp}
    out = subprocess.run([sys.executable, "-c", DUMP], check=True, capture_output=True, env=env, cwd=tmp).stdout
    return dict(json.loads(out))


def as_scripts(sources: dict[str, str]) -> dict[str, sc.Script]:
    out = {}
    for name, source in sources.items():
        s = sc.Script.__new__(sc.Script)
        s.name, s.source, s.sha = name, source, hashlib.sha1(source.encode()).hexdigest()
        out[name] = s
    return out


class Runner:
    """One variant's scripts, and what each phase cost on each repetition."""

    def __init__(self, client: Redis, scripts: dict[str, sc.Script]) -> None:
        self.client = client
        self.scripts = scripts
        self.rows: dict[str, list[Row]] = defaultdict(list)
        self.detail: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))

    def run(self, calls: list[sc.Call[Any]], chunk: int = 50) -> list[Any]:
        out: list[Any] = []
        for i in range(0, len(calls), chunk):
            part = calls[i : i + chunk]
            mine = [dataclasses.replace(c, script=self.scripts[c.script.name]) for c in part if c.script]
            out += sc.run_many(self.client, mine)
        for r in out:
            if isinstance(r, Exception):
                raise r
        return out

    def cpu(self) -> float:
        info = self.client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def phase(self, label: str, calls: list[sc.Call[Any]]) -> list[Any]:
        for name in {c.script.name for c in calls if c.script}:  # loaded outside the measurement
            self.client.script_load(self.scripts[name].source)
        self.client.config_resetstat()
        cpu = self.cpu()
        out = self.run(calls)
        cpu = self.cpu() - cpu
        info = self.client.info("commandstats")
        ev = info.get("cmdstat_evalsha", {"calls": 0, "usec": 0})
        own = ("cmdstat_evalsha", "cmdstat_config|resetstat", "cmdstat_info")
        inner = sum(v["usec"] for k, v in info.items() if k not in own)
        self.rows[label].append((ev["usec"], ev["usec"] - inner, ev["calls"], cpu * 1e6))
        n = max(ev["calls"], 1)
        for k, v in info.items():
            if k not in own:
                self.detail[label][k.removeprefix("cmdstat_")].append((v["usec"] / n, v["calls"] / n))
        return out


def spec(i: int) -> tr.TaskSpec:
    return tr.TaskSpec(f"t{i:08d}", "bench.noop", 5, b"[1, 2]", b"{}", 3, 60000, 1000, 300000, 1, 0)


def workload(r: Runner, n: int) -> None:
    r.client.flushall()
    q = QueueKeys("bench")
    t = tr.Transitions(q)
    later = tr.Transitions(q, clock_offset_ms=3_600_000)  # an hour on: leases expired, retries due
    r.phase("enqueue x1", [t.enqueue([spec(i)], max_payload=1 << 20) for i in range(n)])
    batch = tr.Transitions(QueueKeys("batch"))  # another queue: only the cost of these is wanted
    r.phase("enqueue x100", [batch.enqueue([spec(j) for j in range(i, i + 100)], max_payload=1 << 20)
                             for i in range(0, n, 100)])
    leases = [x for part in r.phase("claim x10", [t.claim("w1", 10, 60000) for _ in range(n // 10)]) for x in part]
    pairs = [(x.task_id, x.token) for x in leases]
    r.phase("heartbeat x10", [t.heartbeat("w1", 60000, {"pid": 1}, pairs[i : i + 10]) for i in range(0, n, 10)])
    half = n // 2
    r.phase("complete", [t.complete(x.task_id, x.token, b"null", 3_600_000) for x in leases[:half]])
    err = b'{"type": "E", "message": "m", "traceback": ""}'
    r.phase("fail", [t.fail(x.task_id, x.token, err, seed=1) for x in leases[half:]])
    r.phase("promote x100", [later.promote(100) for _ in range((n - half) // 100)])
    claims = [t.claim("w1", 10, 1000) for _ in range((n - half) // 10)]
    leases = [x for part in r.phase("claim x10 again", claims) for x in part]
    quarter = len(leases) // 2
    r.phase("release x10", [t.release([(x.task_id, x.token) for x in leases[i : i + 10]])
                            for i in range(0, quarter, 10)])
    r.phase("reap x100", [later.reap(100, seed=1) for _ in range((len(leases) - quarter) // 100)])
    r.phase("cancel", [t.cancel(x.task_id, 0) for x in leases[:quarter]])


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--baseline", default="main", help="the commit to compare with (same KEYS and ARGV)")
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("-n", type=int, default=1000, help="tasks per repetition (a multiple of 200)")
    p.add_argument("--detail", action="store_true", help="per phase, each command's usec per script call (new)")
    p.add_argument("--json", help="also write every measurement to this file")
    a = p.parse_args()
    variants = {"base": baseline_sources(a.baseline), "new": {n: sc.script(n).source for n in sc.SCRIPT_NAMES}}
    with LocalRedis(appendonly=False) as server:
        client = Redis.from_url(server.url)
        runners = {k: Runner(client, as_scripts(v)) for k, v in variants.items()}
        for rep in range(a.reps):
            for k in ("base", "new") if rep % 2 == 0 else ("new", "base"):
                workload(runners[k], a.n)
            print(f"rep {rep + 1}/{a.reps} done", file=sys.stderr)
    print(f"Per script call, lowest of {a.reps}: EVALSHA usec (Redis's timing), its lua part (outside the")
    print(f"commands it ran), server CPU usec (INFO cpu); base = {a.baseline}, ratio = new / base")
    print(f"{'phase':16} {'usec base':>9} {'new':>7} {'ratio':>5}  {'lua base':>8} {'new':>7} {'ratio':>5}  "
          f"{'cpu base':>8} {'new':>7} {'ratio':>5}")
    for label, rows in runners["base"].rows.items():
        cols = []
        for i in (0, 1, 3):
            x, y = (min(row[i] / max(row[2], 1) for row in r) for r in (rows, runners["new"].rows[label]))
            cols.append(f"{x:8.1f} {y:7.1f} {y / max(x, 1e-9):5.2f}")
        print(f"{label:16} " + "  ".join(cols))
    if a.detail:
        for label, cmds in runners["new"].detail.items():
            parts = sorted(((statistics.median(u for u, _ in v), statistics.median(c for _, c in v), k)
                            for k, v in cmds.items()), reverse=True)
            print(f"{label}: " + ", ".join(f"{k} {u:.1f}us x{c:.1f}" for u, c, k in parts))
    if a.json:
        Path(a.json).write_text(json.dumps({k: dict(r.rows) for k, r in runners.items()}))


if __name__ == "__main__":
    main()
