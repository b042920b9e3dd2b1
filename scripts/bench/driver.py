"""The benchmark driver behind ``scripts/bench/run``: orchestrator and its peers, side by side.

Owns the run: which rows (``--only``; with ``--baseline REV``, each orchestrator row again on
commit REV, right after it), a private redis-server (``orchestrator.redis_local``, no
persistence), the round-trip ceiling of one redis-py client, and the loop that runs every
workload of every row three times, each as a subprocess of the row's venv (``python -m
peers ...``). Does not measure a library itself (``peers/_common.py`` does, the same way for
all), build the venvs (``venvs.py``) nor format the table (``report.py``). Runs in the
project's .venv: standard library, redis-py, the package.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import report
import venvs
from venvs import BENCH, ROOT, VENVS

from orchestrator.redis_local import LocalRedis

RESULTS = BENCH / "results"
MARK = "BENCH-RESULT "


@dataclass(frozen=True)
class Row:
    """One line of the table: a library and one way of running its worker."""

    library: str
    variant: str
    label: str
    main: bool = False  # the row that also runs the scale and depth workloads of its library
    baseline: str = ""  # a commit: the row runs that commit's orchestrator (--baseline), not the checkout's

    def python(self) -> Path:
        return venvs.baseline_python(self.baseline) if self.baseline else venvs.peer_python(self.library)


def with_baseline(rows: list[Row], sha: str) -> list[Row]:
    """Each orchestrator row followed by the same row on commit ``sha``, so the two run back to back."""
    out = []
    for row in rows:
        out.append(row)
        if row.library == report.ORCH:
            out.append(dataclasses.replace(row, label=report.baseline_label(row.label, sha), baseline=sha))
    return out


ROWS = (
    Row("orchestrator", "thread", "orchestrator", main=True),
    Row("orchestrator", "async", "orchestrator (async def)"),
    Row("rq", "fork", "RQ Worker (fork)"),
    Row("rq", "simple", "RQ SimpleWorker", main=True),
    Row("arq", "default", "arq", main=True),
    Row("saq", "default", "SAQ", main=True),
    Row("celery", "prefork", "Celery prefork", main=True),
    Row("celery", "threads", "Celery threads"),
    Row("dramatiq", "default", "Dramatiq", main=True),
    Row("huey", "default", "Huey", main=True),
    Row("bullmq", "default", "BullMQ (Python)", main=True),
)

# Sizes and time caps. A drain or enqueue that reaches its cap is reported as a rate over
# what was done, marked partial: slow rows cost a bounded time, fast rows run to the end.
FULL = {
    "ceiling": {"n": 20_000},
    "drain": {"n": 20_000, "cap": 5.0, "enqueue_cap": 5.0},
    "latency": {"samples": 200, "cap": 4.0},
    "io": {"n": 5_000, "cap": 4.0},
    "scale": {"n": 4_000, "cap": 3.0, "procs": [2, 4]},
    "depth": {"small": 1_000, "big": 1_000_000, "fill_cap": 8.0, "fill_cap_ours": 90.0, "k": 1_000, "reps": 3,
              "cap": 5.0},
    "incr": {"n": 20_000, "cap": 5.0, "enqueue_cap": 5.0, "scale_n": 4_000, "scale_cap": 3.0, "procs": [2, 4]},
}
QUICK = {
    "ceiling": {"n": 5_000},
    "drain": {"n": 3_000, "cap": 2.5, "enqueue_cap": 2.0},
    "latency": {"samples": 30, "cap": 1.5},
    "io": {"n": 1_000, "cap": 2.5},
    "scale": {"n": 2_000, "cap": 2.0, "procs": [2, 4]},
    "depth": {"small": 1_000, "big": 100_000, "fill_cap": 3.0, "fill_cap_ours": 10.0, "k": 300, "reps": 1,
              "cap": 3.0},
    "incr": {"n": 3_000, "cap": 2.5, "enqueue_cap": 2.0, "scale_n": 2_000, "scale_cap": 2.0, "procs": [2, 4]},
}
REPEATED = ("drain", "latency", "io", "incr")  # per row, per repetition
ONCE_PER_LIBRARY = ("scale", "depth")  # on the library's main row; scale per repetition, depth repeats inside


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------- redis


def start_redis() -> tuple[LocalRedis, str]:
    """The package's private redis-server (loopback, free port, never 6379), persistence
    off, and its version."""
    server = LocalRedis(appendonly=False, extra=("--loglevel", "warning")).start()
    client = redis.Redis.from_url(server.url)
    try:
        return server, str(client.info("server")["redis_version"])
    finally:
        client.close()


def ceiling(url: str, n: int) -> dict[str, float]:
    """One redis-py client (hiredis), sequential PING and EVALSHA of a trivial script, and pipelined PING."""
    r = redis.Redis.from_url(url)
    sha = r.script_load("return 1")
    out = {}
    t0 = time.perf_counter()
    for _ in range(n):
        r.ping()
    out["ping"] = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(n):
        r.evalsha(sha, 0)
    out["evalsha"] = n / (time.perf_counter() - t0)
    pipe = r.pipeline(transaction=False)
    t0 = time.perf_counter()
    for _ in range(n * 5 // 1000):
        for _ in range(1000):
            pipe.ping()
        pipe.execute()
    out["pipelined"] = n * 5 // 1000 * 1000 / (time.perf_counter() - t0)
    r.flushall()
    r.close()
    return out


# ----------------------------------------------------------------------------- running


def run_peer(row: Row, workloads: list[str], url: str, params: dict[str, Any], pids: Path) -> dict[str, Any]:
    """One subprocess in the row's venv; returns {workload: {"ok": ..., "result" | "error": ...}}."""
    argv = [str(row.python()), "-m", "peers", row.library, ",".join(workloads),
            "--variant", row.variant, "--url", url, "--params", json.dumps(params)]
    env = dict(os.environ, PYTHONPATH=str(BENCH), BENCH_PIDS=str(pids), PYTHONUNBUFFERED="1")
    env.pop("ORCH_REDIS_URL", None)
    proc = subprocess.Popen(argv, cwd=BENCH, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=900)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the adapter stops its workers on SIGTERM
        try:
            stdout, stderr = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        stderr = "timed out after 900 s; " + stderr
    out: dict[str, Any] = {}
    for line in stdout.splitlines():
        if line.startswith(MARK):
            payload = json.loads(line[len(MARK):])
            out[payload.pop("workload")] = payload
    for workload in workloads:
        if workload not in out:
            tail = " | ".join(stderr.strip().splitlines()[-3:]) or f"exit code {proc.returncode}"
            out[workload] = {"ok": False, "error": f"adapter crashed: {tail}"[:300]}
    return out


def workload_params(params: dict[str, Any], row: Row, todo: list[str]) -> dict[str, Any]:
    """The parameters of each workload for this row: orchestrator's deep fill may run longer.

    The depth targets are orchestrator's (claim and enqueue at 1M queued), so its fill gets
    the time to reach 1M; the peers' deep fills stop at ``fill_cap`` and the depth reached is
    reported beside their figures.
    """
    out = {w: dict(params[w]) for w in todo}
    if "depth" in out:
        ours = out["depth"].pop("fill_cap_ours")
        if row.library == "orchestrator":
            out["depth"]["fill_cap"] = ours
    return out


def stop_leftovers(pids: Path) -> None:
    """Stop any worker a crashed adapter left behind (only processes this run started)."""
    if not pids.exists():
        return
    for line in pids.read_text().split():
        with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
            os.killpg(int(line), signal.SIGKILL)
    pids.write_text("")


def parse_args() -> tuple[argparse.Namespace, list[Row], list[str]]:
    parser = argparse.ArgumentParser(prog="scripts/bench/run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one repetition, smaller N (a few minutes)")
    parser.add_argument("--only", default="", help="comma-separated libraries or row labels to run")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 3, or 1 with --quick)")
    parser.add_argument("--workloads", default="drain,latency,io,scale,depth,incr", help="comma-separated subset")
    parser.add_argument("--baseline", metavar="REV", default=None,
                        help="also run each orchestrator row on commit REV (its own venv, this harness), "
                             "right after the current one, and compare the two")
    args = parser.parse_args()
    wanted = {w.strip().lower() for w in args.only.split(",") if w.strip()}
    rows = [r for r in ROWS if not wanted or r.library in wanted or r.label.lower() in wanted]
    if not rows:
        parser.error(f"--only matched no row; libraries: {', '.join(sorted({r.library for r in ROWS}))}")
    args.sha = None
    if args.baseline is not None:
        try:
            args.sha = venvs.resolve(args.baseline)
        except ValueError as exc:
            parser.error(f"--baseline {args.baseline}: {exc}")
        if not any(r.library == report.ORCH for r in rows):
            parser.error("--baseline compares orchestrator rows, and --only left none")
        rows = with_baseline(rows, args.sha)
    return args, rows, [w for w in args.workloads.split(",") if w]


def prepare(rows: list[Row], sha: str | None) -> dict[str, str]:
    """Every venv the rows need; {library or row label: why it failed}, "bench" for the chart's."""
    names = sorted({r.library for r in rows} - {report.ORCH} | {"bench"})
    # The peers' and the baseline's venvs hold compiled bytecode, as a user's pip install does;
    # this checkout is editable, and with PYTHONDONTWRITEBYTECODE set (as on the bench machine)
    # each `orch worker` compiled every module at start-up (about 45% of its start-up time).
    compileall.compile_dir(ROOT / "orchestrator", quiet=1)
    log(f"checking venvs: {', '.join(names)}")
    failed = venvs.install(names)
    if sha:
        log(f"baseline {sha}: checking scripts/bench/.baseline/{sha} (first time: export and install, ~1 min)")
        reason = venvs.ensure_baseline(sha)
        failed.update({r.label: reason for r in rows if r.baseline and reason})
    for name, reason in failed.items():
        log(f"{name}: install failed: {reason}")
    return failed


def run_all(rows: list[Row], workloads: list[str], reps: int, params: dict[str, Any], data: dict[str, Any]) -> None:
    """Every repetition: the ceiling, then each row's workloads in turn; results go into ``data``."""
    server, version = start_redis()
    log(f"redis-server {version} on port {server.port}")
    data["redis"] = version
    pids = RESULTS / ".worker-pids"
    failed = data["install_failed"]
    try:
        for rep in range(reps):
            data["ceiling"].append(ceiling(server.url, params["ceiling"]["n"]))
            log(f"rep {rep + 1}/{reps}: round-trip ceiling {data['ceiling'][-1]['evalsha']:,.0f} EVALSHA/s")
            for row in rows:
                if row.library in failed or row.label in failed:
                    continue
                todo = [w for w in REPEATED if w in workloads]
                todo += [w for w in ONCE_PER_LIBRARY if w in workloads and row.main and (w != "depth" or rep == 0)]
                t0 = time.time()
                got = run_peer(row, todo, server.url, workload_params(params, row, todo), pids)
                stop_leftovers(pids)
                runs = data["runs"].setdefault(row.label, {})
                for workload, payload in got.items():
                    runs.setdefault(workload, []).append(payload)
                data.setdefault("timings", []).append({"rep": rep, "row": row.label, "workloads": todo,
                                                       "seconds": round(time.time() - t0, 1)})
                errors = [f"{w}: {p['error']}" for w, p in got.items() if not p["ok"]]
                log(f"rep {rep + 1}/{reps}: {row.label}: {', '.join(todo)} in {time.time() - t0:.0f} s"
                    + (f"; errors: {'; '.join(errors)}" if errors else ""))
    finally:
        server.stop()


def main() -> int:
    args, rows, workloads = parse_args()
    params = QUICK if args.quick else FULL
    reps = args.reps or (1 if args.quick else 3)
    started = time.time()
    failed = prepare(rows, args.sha)
    chart_ok = "bench" not in failed
    failed.pop("bench", None)
    RESULTS.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"), "quick": args.quick, "reps": reps, "params": params,
        "cpus": os.cpu_count(), "python": sys.version.split()[0],
        "workloads": workloads, "rows": [r.__dict__ for r in rows], "install_failed": failed, "ceiling": [], "runs": {},
    }
    if args.sha:
        data["baseline"] = {"rev": args.baseline, "sha": args.sha, "current": venvs.describe_head(),
                            "subject": venvs.git("log", "-1", "--format=%s", args.sha)}
    run_all(rows, workloads, reps, params, data)
    data["seconds"] = time.time() - started
    summary = report.summarize(data)
    data["summary"] = summary
    stamp = time.strftime("%Y%m%d-%H%M%S") + ("-quick" if args.quick else "")
    for name in (f"bench-{stamp}.json", "latest.json"):
        (RESULTS / name).write_text(json.dumps(data, indent=1))
    markdown = report.markdown(data, summary)
    (RESULTS / "latest.md").write_text(markdown)
    (RESULTS / f"bench-{stamp}.md").write_text(markdown)
    print(markdown)
    if chart_ok:
        chart = subprocess.run(
            [str(VENVS / "bench" / "bin" / "python"), str(BENCH / "chart.py"), str(RESULTS / "latest.json"),
             str(RESULTS / "latest.png"), str(RESULTS / f"bench-{stamp}.png")],
            capture_output=True, text=True,
        )
        if chart.returncode != 0:
            log(f"chart failed: {chart.stderr.strip().splitlines()[-1:]}")
    else:
        log("chart skipped: the bench venv (matplotlib) did not install")
    where = RESULTS.relative_to(ROOT)
    log(f"done in {data['seconds'] / 60:.1f} min; results in {where}/latest.md, latest.json, latest.png")
    return 0

if __name__ == "__main__":
    sys.exit(main())
