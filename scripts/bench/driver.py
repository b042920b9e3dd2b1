"""The benchmark driver behind ``scripts/bench/run``: orchestrator and its peers, side by side.

Owns the run: installing each peer into its own virtualenv from its pinned requirements
file, a private redis-server (``orchestrator.redis_local``, no persistence), the round-trip
ceiling of one redis-py client, and the loop that runs every workload of every row three
times, each as a subprocess of the row's venv (``python -m peers ...``). Does not measure
a library itself (``peers/_common.py`` does, the same way for all) nor format the table
(``report.py``). Runs in the project's .venv: standard library, redis-py, the package.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import report

from orchestrator.redis_local import LocalRedis

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent.parent
VENVS = BENCH / ".venvs"
RESULTS = BENCH / "results"
REQUIREMENTS = BENCH / "requirements"
MARK = "BENCH-RESULT "


@dataclass(frozen=True)
class Row:
    """One line of the table: a library and one way of running its worker."""

    library: str
    variant: str
    label: str
    main: bool = False  # the row that also runs the scale and depth workloads of its library


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
}
QUICK = {
    "ceiling": {"n": 5_000},
    "drain": {"n": 3_000, "cap": 2.5, "enqueue_cap": 2.0},
    "latency": {"samples": 30, "cap": 1.5},
    "io": {"n": 1_000, "cap": 2.5},
    "scale": {"n": 2_000, "cap": 2.0, "procs": [2, 4]},
    "depth": {"small": 1_000, "big": 100_000, "fill_cap": 3.0, "fill_cap_ours": 10.0, "k": 300, "reps": 1,
              "cap": 3.0},
}
REPEATED = ("drain", "latency", "io")  # per row, per repetition
ONCE_PER_LIBRARY = ("scale", "depth")  # on the library's main row; scale per repetition, depth repeats inside


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------- venvs


def base_python() -> str:
    return os.environ.get("BENCH_PYTHON") or getattr(sys, "_base_executable", None) or sys.executable


def venv_python(library: str) -> Path:
    return Path(sys.executable) if library == "orchestrator" else VENVS / library / "bin" / "python"


def ensure_venv(name: str) -> str | None:
    """Create or refresh .venvs/<name> from requirements/<name>.txt; None when ready, else why not."""
    req = REQUIREMENTS / f"{name}.txt"
    venv = VENVS / name
    digest = hashlib.sha256(req.read_bytes()).hexdigest()
    stamp = venv / ".bench-requirements"
    if stamp.exists() and stamp.read_text() == digest:
        return None
    shutil.rmtree(venv, ignore_errors=True)
    steps = (
        [base_python(), "-m", "venv", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", str(req)],
    )
    for argv in steps:
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode != 0:
            lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip() and "WARNING" not in ln]
            reason = next((ln for ln in reversed(lines) if "ERROR" in ln), lines[-1] if lines else "no output")
            shutil.rmtree(venv, ignore_errors=True)
            return reason.replace("ERROR: ", "").strip()[:200]
    stamp.write_text(digest)
    return None


def install(names: list[str]) -> dict[str, str]:
    """Install the venvs in parallel; returns {name: reason} for those that failed."""
    VENVS.mkdir(parents=True, exist_ok=True)
    log(f"checking venvs: {', '.join(names)}")
    with ThreadPoolExecutor(4) as pool:
        reasons = dict(zip(names, pool.map(ensure_venv, names), strict=True))
    for name, reason in reasons.items():
        if reason:
            log(f"{name}: install failed: {reason}")
    return {name: reason for name, reason in reasons.items() if reason}


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
    argv = [str(venv_python(row.library)), "-m", "peers", row.library, ",".join(workloads),
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


def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench/run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one repetition, smaller N (a few minutes)")
    parser.add_argument("--only", default="", help="comma-separated libraries or row labels to run")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 3, or 1 with --quick)")
    parser.add_argument("--workloads", default="drain,latency,io,scale,depth", help="comma-separated subset")
    args = parser.parse_args()
    params = QUICK if args.quick else FULL
    reps = args.reps or (1 if args.quick else 3)
    wanted = {w.strip().lower() for w in args.only.split(",") if w.strip()}
    rows = [r for r in ROWS if not wanted or r.library in wanted or r.label.lower() in wanted]
    workloads = [w for w in args.workloads.split(",") if w]
    if not rows:
        parser.error(f"--only matched no row; libraries: {', '.join(sorted({r.library for r in ROWS}))}")
    started = time.time()
    failed = install(sorted({r.library for r in rows} - {"orchestrator"} | {"bench"}))
    chart_ok = "bench" not in failed
    failed.pop("bench", None)

    server, version = start_redis()
    log(f"redis-server {version} on port {server.port}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    pids = RESULTS / ".worker-pids"
    data: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"), "quick": args.quick, "reps": reps, "params": params,
        "redis": version, "cpus": os.cpu_count(), "python": sys.version.split()[0],
        "rows": [r.__dict__ for r in rows], "install_failed": failed, "ceiling": [], "runs": {},
    }
    try:
        for rep in range(reps):
            data["ceiling"].append(ceiling(server.url, params["ceiling"]["n"]))
            log(f"rep {rep + 1}/{reps}: round-trip ceiling {data['ceiling'][-1]['evalsha']:,.0f} EVALSHA/s")
            for row in rows:
                if row.library in failed:
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
