"""What every peer adapter shares: the job's recorder, the workloads and how they are measured.

Owns the measurement, the same for every library: a job appends one fixed-width line
(``time.time()`` and the worker's tag) to the file or FIFO named by ``BENCH_SINK``, and the
harness reads those lines, never the library's own state. Workers are started with the
library's own command line, as a user would, in a process group of their own so they can
be stopped with everything they forked. Runs inside each peer's virtualenv: standard
library and redis-py only. Does not know any library: each adapter module supplies a
``Producer`` and ``worker_argv``; the driver (``scripts/bench/driver.py``) runs the workloads
and builds the table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from peers._producer import Adapter

PIDS_ENV = "BENCH_PIDS"  # a file the driver reads to stop any worker left behind
SINK_ENV = "BENCH_SINK"
TAG_ENV = "BENCH_WORKER"
URL_ENV = "BENCH_REDIS_URL"
RESULT_MARK = "BENCH-RESULT "
LINE = 20  # b"%.6f %s\n": 17 characters of time.time(), a space, a one-character tag, a newline
BENCH_DIR = Path(__file__).resolve().parent.parent

# ----------------------------------------------------------------------------- the job side

_sink: tuple[int, int] | None = None  # (pid, fd): reopened after a fork


def record() -> None:
    """Called by every benchmark job: one line with the time it ran and the worker's tag."""
    global _sink
    pid = os.getpid()
    if _sink is None or _sink[0] != pid:
        fd = os.open(os.environ[SINK_ENV], os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK)
        _sink = (pid, fd)
    tag = os.environ.get(TAG_ENV, "0")[:1].encode()
    os.write(_sink[1], b"%.6f %s\n" % (time.time(), tag))


def redis_url() -> str:
    return os.environ[URL_ENV]


# ------------------------------------------------------------------------------ the workers


class Workers:
    """k worker processes of one library, each in its own process group, logging to a file."""

    def __init__(self, argv: list[str], url: str, sink: str, k: int, log: Path) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.log = log
        env = dict(os.environ)
        env.update({URL_ENV: url, SINK_ENV: sink, "PYTHONPATH": str(BENCH_DIR), "PYTHONUNBUFFERED": "1"})
        env["ORCH_REDIS_URL"] = url
        self.started = time.time()
        with open(log, "ab") as out:
            for tag in range(k):
                env[TAG_ENV] = str(tag)
                self.procs.append(
                    subprocess.Popen(
                        argv, cwd=BENCH_DIR, env=dict(env), stdout=out, stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL, start_new_session=True,
                    )
                )
        if os.environ.get(PIDS_ENV):
            with open(os.environ[PIDS_ENV], "a") as pids:
                pids.writelines(f"{p.pid}\n" for p in self.procs)

    def dead(self) -> bool:
        return any(p.poll() is not None for p in self.procs)

    def stop(self) -> None:
        """SIGKILL the process groups: nothing is measured after this, and the driver flushes Redis."""
        t0 = time.monotonic()
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
        for p in self.procs:
            p.wait()
        self.stop_s = time.monotonic() - t0

    def tail(self, lines: int = 6) -> str:
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])


# ------------------------------------------------------------------------ reading the sink


def read_sink(path: str) -> list[tuple[float, str]]:
    data = Path(path).read_bytes()
    out = []
    for line in data.splitlines():
        stamp, _, tag = line.partition(b" ")
        out.append((float(stamp), tag.decode()))
    out.sort()
    return out


def wait_lines(path: str, target: int, cap: float, workers: Workers | None, k: int = 1,
               startup: float = 60.0) -> bool:
    """Wait until the sink holds ``target`` lines; False when ``cap`` seconds pass first.

    The cap starts once all k workers have each run a task (or ``startup`` seconds have
    passed), so a slow start-up costs no measuring time.
    """
    deadline = time.monotonic() + startup
    started = False
    while time.monotonic() < deadline:
        size = os.stat(path).st_size
        if size >= target * LINE:
            return True
        if not started and size >= LINE and (k == 1 or len({tag for _, tag in read_sink(path)}) >= k):
            started, deadline = True, time.monotonic() + cap
        if workers is not None and workers.dead():
            raise RuntimeError(f"worker exited: {workers.tail()}")
        time.sleep(0.05)
    return os.stat(path).st_size >= target * LINE


def window(lines: list[tuple[float, str]], k: int) -> dict[str, Any]:
    """Completions per second from the moment every worker has completed one, to the last."""
    firsts: dict[str, float] = {}
    for stamp, tag in lines:
        firsts.setdefault(tag, stamp)
    ready = max(firsts.values()) if len(firsts) >= k else min(firsts.values())
    counted = [s for s, _ in lines if s >= ready]
    span = counted[-1] - ready if counted else 0.0
    rate = (len(counted) - 1) / span if span > 0 else None
    return {"rate": rate, "span": span, "counted": len(counted), "active": len(firsts)}


# ---------------------------------------------------------------------------- measurements


class Bench:
    """One adapter, one variant, one Redis: the workloads the driver asks for."""

    def __init__(self, adapter: Adapter, variant: str, url: str, params: dict[str, Any], workdir: Path) -> None:
        self.adapter = adapter
        self.variant = variant
        self.url = url
        self.params = params
        self.p: dict[str, Any] = {}  # the parameters of the workload being run
        self.dir = workdir
        self.r = redis.Redis.from_url(url)
        self.producer = adapter.producer(url, variant)
        self._runs = 0

    def close(self) -> None:
        self.producer.close()
        self.r.close()

    # -- helpers

    def flush(self) -> None:
        self.r.flushall()

    def redis_cpu(self) -> float:
        """Seconds of CPU the Redis server has used (user + system)."""
        info = self.r.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def used_memory(self) -> int:
        return int(self.r.info("memory")["used_memory"])

    def sink(self) -> str:
        self._runs += 1
        path = self.dir / f"sink-{self._runs}"
        path.write_bytes(b"")
        return str(path)

    def argv(self, mode: str) -> list[str] | str:
        return self.adapter.worker_argv(self.variant, mode)

    def start(self, argv: list[str], sink: str, k: int = 1) -> Workers:
        return Workers(argv, self.url, sink, k, self.dir / f"worker-{self._runs}.log")

    def fill(self, kind: str, n: int, cap: float | None = None) -> tuple[int, float]:
        """Queue n tasks, the fastest public way (bulk API if any); returns (queued, seconds)."""
        chunk = n if cap is None else 10_000 if self.producer.bulk else 2_000
        put = self.producer.many if self.producer.bulk else self.producer.each
        done, t0 = 0, time.perf_counter()
        while done < n:
            step = min(chunk, n - done)
            put(kind, step)
            done += step
            if cap is not None and time.perf_counter() - t0 > cap:
                break
        return done, time.perf_counter() - t0

    def drain(self, argv: list[str], n: int, cap: float, k: int = 1, stats: bool = False) -> dict[str, Any]:
        """Start k workers on n queued tasks; completions per second once all are running."""
        sink = self.sink()
        if stats:
            self.r.config_resetstat()
            cpu0 = self.redis_cpu()
        workers = self.start(argv, sink, k)
        try:
            complete = wait_lines(sink, n, cap, workers, k)
        finally:
            if stats:
                cpu = self.redis_cpu() - cpu0
                commandstats = self.r.info("commandstats")
            workers.stop()
        lines = read_sink(sink)
        if len(lines) < 2:
            raise RuntimeError(f"{len(lines)} of {n} tasks ran in {cap:g} s; worker log: {workers.tail()}")
        out = window(lines, k)
        out.update(done=len(lines), of=n, partial=not complete, startup=lines[0][0] - workers.started,
                   stop=workers.stop_s)
        if stats:
            out["redis"] = per_task(commandstats, cpu, len(lines))
        return out

    # -- workloads

    def each(self, kind: str, n: int, cap: float) -> tuple[int, float, float]:
        """Enqueue up to n tasks one call each, stopping after ``cap`` seconds of enqueueing.

        Returns (queued, seconds, ceiling): between batches of 1,000 enqueues, 250 EVALSHA of
        a trivial script time this process's own round trip, so the enqueue rate can be
        compared with a ceiling measured in the same moments (the round trip of a quiet
        2-core machine drifts by 2x or more with CPU idle states and other load).
        """
        sha = self.r.script_load("return 1")
        done, spent, trips, trip_s = 0, 0.0, 0, 0.0
        while done < n and spent < cap:
            step = min(1000, n - done)
            t0 = time.perf_counter()
            self.producer.each(kind, step)
            spent += time.perf_counter() - t0
            done += step
            t0 = time.perf_counter()
            for _ in range(250):
                self.r.evalsha(sha, 0)
            trip_s += time.perf_counter() - t0
            trips += 250
        return done, spent, trips / trip_s

    def w_drain(self) -> dict[str, Any]:
        """1 and 2: enqueue N one call each, drain with default settings; bulk-enqueue N, drain tuned."""
        n, cap, enqueue_cap = self.p["n"], self.p["cap"], self.p["enqueue_cap"]
        out: dict[str, Any] = {}
        argv, tuned = self.argv("default"), self.argv("tuned")
        if isinstance(argv, str):
            raise RuntimeError(argv)
        # One task first, then FLUSHALL (which keeps the script cache): the library's scripts are
        # loaded before m0, so they count in no row's memory per task; without this the first row
        # of a run to load scripts that the next rows share (a --baseline row's) paid for them alone.
        self.producer.each("noop", 1)
        self.flush()
        m0 = self.used_memory()
        queued, seconds, ceiling = self.each("noop", n, enqueue_cap)
        out["enqueue"] = {"rate": queued / seconds, "done": queued, "of": n, "partial": queued < n,
                          "ceiling": ceiling}
        out["memory_queued"] = (self.used_memory() - m0) / queued
        out["drain"] = self.drain(argv, queued, cap, stats=True)
        self.flush()
        if self.producer.bulk:
            t0 = time.perf_counter()
            self.producer.many("noop", n)
            out["bulk"] = {"rate": n / (time.perf_counter() - t0)}
            queued = n
        elif not isinstance(tuned, str):
            queued, _ = self.fill("noop", n, enqueue_cap)
        if isinstance(tuned, str):
            out["tuned"] = {"na": tuned}
        else:
            out["tuned"] = self.drain(tuned, queued, cap)
        self.flush()
        return out

    def w_incr(self) -> dict[str, Any]:
        """7: the one-round-trip job (an INCR of its own): enqueue, drain, c=100, 2 and 4 processes,
        with Redis CPU per phase (``_roundtrip``)."""
        from peers._roundtrip import workload  # its jobs import this module

        return workload(self)

    def w_latency(self) -> dict[str, Any]:
        """3: an idle worker; enqueue one task, time until the function runs."""
        argv = self.argv("default")
        if isinstance(argv, str):
            raise RuntimeError(argv)
        self.flush()
        fifo = str(self.dir / "latency.fifo")
        os.mkfifo(fifo)
        fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
        buf = b""

        def next_line(timeout: float) -> float | None:
            nonlocal buf
            deadline = time.monotonic() + timeout
            while b"\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([fd], [], [], left)[0]:
                    return None
                buf += os.read(fd, 4096)
            line, _, buf = buf.partition(b"\n")
            return float(line.split()[0])

        workers = self.start(argv, fifo)
        samples: list[float] = []
        try:
            self.producer.one("noop")  # warm-up: the worker has started and run one task
            if next_line(60) is None:
                raise RuntimeError(f"the warm-up task did not run in 60 s; worker log: {workers.tail()}")
            time.sleep(0.5)
            stop = time.monotonic() + self.p["cap"]
            while len(samples) < self.p["samples"] and time.monotonic() < stop:
                t0 = time.time()
                self.producer.one("noop")
                ran = next_line(max(1.0, stop - time.monotonic()) + 15)
                if ran is None:
                    break
                samples.append((ran - t0) * 1000)
                time.sleep(0.005)  # let the worker go idle again
        finally:
            workers.stop()
            os.close(fd)
        self.flush()
        if not samples:
            raise RuntimeError("no latency sample")
        return {"p50": percentile(samples, 50), "p99": percentile(samples, 99), "n": len(samples),
                "mean": statistics.fmean(samples)}

    def w_io(self) -> dict[str, Any]:
        """4: tasks that each sleep 10 ms, one worker process, concurrency 100."""
        argv = self.argv("io")
        if isinstance(argv, str):
            return {"na": argv}
        n = self.p["n"]
        self.flush()
        self.fill("sleep", n)
        out = self.drain(argv, n, self.p["cap"])
        self.flush()
        return out

    def w_scale(self) -> dict[str, Any]:
        """6: drain with several worker processes (default settings each): N tasks per process count."""
        argv = self.argv("default")
        if isinstance(argv, str):
            raise RuntimeError(argv)
        n, procs = self.p["n"], self.p["procs"]
        self.flush()
        self.fill("noop", (n + 200) * len(procs))  # killed workers take their claimed tasks along
        out = {str(k): self.drain(argv, n, self.p["cap"], k=k) for k in procs}
        self.flush()
        return out

    def w_depth(self) -> dict[str, Any]:
        """5: single enqueue and drain cost with a deep queue against a shallow one; memory per task.

        At each depth: ``reps`` timed batches of k single enqueues (each followed by 100 timed
        EVALSHA round trips, as the unit the enqueue cost is counted in), then one worker drains
        ``reps`` windows of k tasks (the queue stays at about that depth throughout).
        """
        argv = self.argv("default")
        if isinstance(argv, str):
            raise RuntimeError(argv)
        k, reps = self.p["k"], self.p["reps"]
        out: dict[str, Any] = {}
        for label, depth, cap in (("small", self.p["small"], None), ("big", self.p["big"], self.p["fill_cap"])):
            self.flush()
            m0 = self.used_memory()
            queued, seconds = self.fill("noop", depth, cap)
            entry: dict[str, Any] = {"depth": queued, "fill_s": seconds, "memory": (self.used_memory() - m0) / queued}
            enq, trips = [], []
            sha = self.r.script_load("return 1")
            for _ in range(reps):
                t0 = time.perf_counter()
                self.producer.each("noop", k)
                enq.append((time.perf_counter() - t0) / k * 1e6)
                t0 = time.perf_counter()
                for _ in range(100):  # this moment's round trip: the enqueue cost is compared in round trips
                    self.r.evalsha(sha, 0)
                trips.append((time.perf_counter() - t0) / 100 * 1e6)
            sink = self.sink()
            workers = self.start(argv, sink)
            try:
                complete = wait_lines(sink, k * reps, self.p["cap"], workers)
            finally:
                workers.stop()
            lines = [t for t, _ in read_sink(sink)]
            size = len(lines) // reps
            parts = [lines[i * size:(i + 1) * size] for i in range(reps)]
            entry.update(enqueue_us=enq, trip_us=trips, partial=not complete, drained=len(lines),
                         drain=[(len(p) - 1) / (p[-1] - p[0]) if len(p) > 1 and p[-1] > p[0] else None
                                for p in parts])
            out[label] = entry
        self.flush()
        return out


def per_task(commandstats: dict[str, Any], cpu: float, n: int) -> dict[str, Any]:
    """Redis CPU per task, and calls and microseconds per task by command (INFO commandstats).

    Commands run inside a script are counted both on their own and in the script's time.
    """
    cmds = {}
    for name, row in commandstats.items():
        cmd = name.removeprefix("cmdstat_")
        if cmd.startswith(("config", "info", "flushall")):
            continue
        cmds[cmd] = {"calls": row["calls"] / n, "usec": row["usec"] / n}
    scripts = sum(c["calls"] for name, c in cmds.items() if name in ("evalsha", "eval", "fcall"))
    return {
        "cpu_us": cpu / n * 1e6,
        "script_calls": scripts,
        "commands": dict(sorted(cmds.items(), key=lambda kv: -kv[1]["usec"])),
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


# ----------------------------------------------------------------------------- entry point


def main(adapter: Adapter, argv: list[str] | None = None) -> None:
    """``python -m peers PEER WORKLOAD[,...] --variant V --url URL --params JSON``: a JSON line per workload."""
    parser = argparse.ArgumentParser(prog="python -m peers")
    parser.add_argument("workloads", help="comma-separated: drain, latency, io, scale, depth, incr")
    parser.add_argument("--variant", default="")
    parser.add_argument("--url", default="")
    parser.add_argument("--params", default="{}")
    args = parser.parse_args(argv)
    os.environ[URL_ENV] = args.url
    signal.signal(signal.SIGTERM, _exit_on_term)  # so the finally blocks stop the workers
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        bench = Bench(adapter, args.variant, args.url, json.loads(args.params), Path(tmp))
        try:
            for workload in args.workloads.split(","):
                try:
                    run: Callable[[], dict[str, Any]] = getattr(bench, f"w_{workload}")
                    bench.p = bench.params.get(workload, {})
                    emit({"workload": workload, "ok": True, "result": run()})
                except Exception as exc:
                    emit({"workload": workload, "ok": False, "error": f"{type(exc).__name__}: {exc}"})
                    with contextlib.suppress(Exception):
                        bench.flush()
        finally:
            with contextlib.suppress(Exception):
                bench.close()


def _exit_on_term(signum: int, frame: object) -> None:
    raise SystemExit(f"stopped by signal {signum}")


def emit(payload: dict[str, Any]) -> None:
    sys.stdout.write(RESULT_MARK + json.dumps(payload) + "\n")
    sys.stdout.flush()

