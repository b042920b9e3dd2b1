"""The chaos soak behind ``scripts/chaos``: real processes, random faults, then the invariants.

Starts a private redis-server (appendonly yes, appendfsync everysec, a free port, never
6379), two ``orch scheduler``s, three ``orch worker``s (thread, process and asyncio pools)
running ``soak_tasks``, and two producer processes (``soak_producer``). For the chaos
window it breaks something every few seconds at random: kill -9 a worker or a scheduler
and start a new one, SIGSTOP a worker (its whole process group, as a paused machine) past
its lease and SIGCONT it later, and once per run kill -9 Redis and restart it on its
append-only file, same port. The producers stop some seconds before the window ends; the
soak then waits (with a deadline) for the queues to drain, stops everything, reads back
the records, the runs the task functions logged, the event streams (tailed all along,
since the streams are capped) and the indexes, and checks the invariants (``soak_check``).

Owns the fault schedule, collecting the evidence and the report; the processes are
``soak_fleet``'s, the invariants ``soak_check``'s. Run it with
``scripts/chaos [--minutes N] [--seed S]`` or ``python -m tests.chaos.soak --help``;
``run_soak(SoakConfig(...))`` is what the test calls. Exit code 0 only when every
invariant holds. The fault schedule follows the seed; timing still varies from run to run.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import re
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson
import redis

from orchestrator.connection import sync_client
from orchestrator.keys import QueueKeys
from orchestrator.redis_local import LocalCluster, LocalRedis

from .soak_check import Report, check
from .soak_evidence import Collected, load, save
from .soak_fleet import POOLS, QUEUES, EventTailer, Fleet, Member
from .soak_tasks import ATTEMPTS_KEY

SCHEDULERS = 2
PRODUCERS = 2
ACTIONS = {"kill9_worker": 3, "kill9_scheduler": 2, "freeze_worker": 2}  # kind: weight
STALE_AFTER = 15.0  # seconds past a lease's deadline that a task may still sit in running (reaper restarts, load)
LATE_REFUSED = re.compile(r"Lease of task \S+ lost \(reaped or given to another worker\): result dropped")
LOST_STOPPED = re.compile(r"Lease of task \S+ lost; stopping it")


@dataclass(frozen=True)
class SoakConfig:
    """One soak's shape. Durations in seconds."""

    seconds: float = 600.0  # the chaos window: producers and faults
    seed: int | None = None
    quiet: float = 10.0  # producers stop this long before the window ends
    chaos_every: tuple[float, float] = (3.0, 7.0)  # pause between faults
    lease: float = 3.0
    heartbeat: float = 0.5
    freeze_extra: tuple[float, float] = (1.5, 4.0)  # a freeze lasts lease + this
    redis_at: tuple[float, float] = (0.3, 0.55)  # the Redis kill, as a fraction of the window
    redis_outage: tuple[float, float] = (0.5, 2.0)
    rate: float = 4.0  # tasks a second, per producer
    drain_timeout: float = 180.0
    workdir: Path | None = None  # logs and evidence; a new temporary directory by default
    progress_every: float = 30.0
    cluster: bool = False  # a local Redis Cluster (3 masters, 3 replicas); the Redis fault kills a master
    durability: str = "fast"  # Settings.durability of every process ("replicated": WAIT for a replica)

    @classmethod
    def short(cls, **changes: Any) -> SoakConfig:
        """About a minute end to end, every kind of fault at least once: the test suite's run."""
        base = cls(seconds=40.0, quiet=6.0, chaos_every=(2.0, 3.5), rate=3.0, drain_timeout=90.0,
                   progress_every=10.0)
        return replace(base, **changes)


# ---------------------------------------------------------------------------- soak


@dataclass
class SoakResult:
    config: SoakConfig
    seed: int
    workdir: Path
    redis_dir: Path | None  # kept when something failed
    actions: Counter[str]
    started: Counter[str]
    outage: float
    drain: float | None
    elapsed: float
    late_refused: int
    lost_stopped: int
    report: Report
    chaos_log: list[str] = field(default_factory=list)
    refused: int = 0  # processes that exited 3 at start while Redis was down, and were started again

    @property
    def passed(self) -> bool:
        return self.report.passed

    def render(self) -> str:
        c = self.report.counts
        cfg = self.config
        redis_fault = "master_failover" if cfg.cluster else "redis_restart"
        actions = ", ".join(f"{k} {self.actions[k]}" for k in (*ACTIONS, redis_fault))
        failed = ", ".join(f"{k.split(': ', 1)[1]} {v}" for k, v in sorted(c.items()) if k.startswith("failed: "))
        zombies = ", ".join(f"{k.split('lease ')[1].rstrip(')')} {v}" for k, v in sorted(c.items())
                            if k.startswith("zombie overlaps"))
        drain = f"{self.drain:.1f} s" if self.drain is not None else f"NOT within {cfg.drain_timeout:g} s"
        lines = [
            f"== chaos soak: {cfg.seconds:g} s of faults, seed {self.seed}, {self.elapsed:.0f} s in all ==",
            f"setup      {'Redis Cluster (3 masters, 3 replicas), ' if cfg.cluster else ''}redis-server appendonly "
            f"yes, appendfsync everysec; durability {cfg.durability}; lease {cfg.lease:g} s, heartbeat "
            f"{cfg.heartbeat:g} s; {SCHEDULERS} schedulers, workers {', '.join(POOLS)}, {PRODUCERS} producers",
            "processes  started: workers " + ", ".join(f"{p} {self.started[p]}" for p in POOLS)
            + f"; schedulers {self.started['scheduler']}"
            + (f"; {self.refused} exited at start while Redis was down (started again)" if self.refused else ""),
            f"chaos      {actions} (Redis down {self.outage:.1f} s)",
            f"enqueue    {c['requests']} requests: {c['acknowledged']} acknowledged ({c['acknowledged new']} new, "
            f"{c['acknowledged existing (key)']} existing by key), {c['unacknowledged']} unacknowledged "
            f"({c.get('unacknowledged present', 0)} present anyway, {c.get('unacknowledged lost', 0)} lost)",
            f"tasks      {c['tasks']}: succeeded {c.get('state SUCCESS', 0)}, failed {c.get('state FAILED', 0)}"
            + (f" ({failed})" if failed else "")
            + "".join(f", {k.split()[1]} {v}" for k, v in sorted(c.items())
                      if k.startswith("state ") and k not in ("state SUCCESS", "state FAILED")),
            f"runs       {c['runs']} runs, {c['retried tasks']} tasks retried; zombie overlaps: {zombies or 'none'}; "
            f"{c.get('runs started after their lease ended', 0)} started after their lease ended, "
            f"{c['runs that could not find their lease']} could not find it (lease gone before the pool child started)",
            f"leases     {c['reaped']} reaped ({c['reaped from a live, running worker']} from a worker neither killed "
            f"nor frozen, Redis up); {self.late_refused} late outcomes refused (LEASE_LOST), "
            f"{self.lost_stopped} runs stopped on a lost lease",
            f"keys       {c.get('keys used', 0)} idempotency keys, up to {c.get('tasks per key (max over the run)', 0)}"
            f" tasks each over the run",
            f"drain      {drain}; {c['events']} events read",
            "invariants",
        ]
        for inv in self.report.invariants:
            lines += inv.lines()
        if self.report.notes:
            lines.append("notes (allowed, worth a look)")
            lines += [f"  - {n}" for n in self.report.notes[:10]]
            if len(self.report.notes) > 10:
                lines.append(f"  ... and {len(self.report.notes) - 10} more")
        verdict = "PASS: every invariant holds" if self.passed else "FAIL: invariants violated"
        lines.append(f"RESULT {verdict} (logs and evidence in {self.workdir})")
        if self.redis_dir is not None:
            lines.append(f"       the Redis data directory is kept in {self.redis_dir}")
        return "\n".join(lines)


class Soak:
    def __init__(self, config: SoakConfig, say: Callable[[str], None]) -> None:
        self.config = config
        self.seed = config.seed if config.seed is not None else random.randrange(1_000_000)
        self.rng = random.Random(self.seed)
        self.say = say
        self.workdir = config.workdir or Path(tempfile.mkdtemp(prefix="orch-chaos-"))
        self.actions: Counter[str] = Counter()
        self.chaos_log: list[str] = []
        self.faults: list[dict[str, Any]] = []  # kind, target, ms (Redis clock): for explaining reaps
        self.stale: list[str] = []  # leases seen expired in running for longer than STALE_AFTER
        self._next_sample = 0.0
        self._clock: redis.Redis | None = None
        self.outage = 0.0
        self.t0 = time.monotonic()

    # ------------------------------------------------------------------ running

    def run(self) -> SoakResult:
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        server: LocalRedis | LocalCluster
        server = LocalCluster(appendonly=True).start() if self.config.cluster else LocalRedis(appendonly=True).start()
        try:
            return self._run(server)
        except BaseException:
            if isinstance(server, LocalCluster):
                server.stop()
                raise
            server.kill()
            self.say(f"[soak] aborted; the Redis data directory is kept in {server.dir}")
            raise

    def _run(self, server: LocalRedis | LocalCluster) -> SoakResult:
        cfg = self.config
        self.say(f"[soak] seed {self.seed}, Redis at {server.url}, evidence in {self.workdir}")
        fleet = Fleet(server.url, self.workdir / "logs", lease=cfg.lease, heartbeat=cfg.heartbeat, rate=cfg.rate,
                      durability=cfg.durability)
        self._clock = sync_client(server.url)
        tailer = EventTailer(server.url, self.workdir / "events.jsonl")
        drain: float | None = None
        try:
            tailer.start()
            for _ in range(SCHEDULERS):
                fleet.scheduler()
            for pool in POOLS:
                fleet.worker(pool)
            self.t0 = time.monotonic()
            stop_at = time.time() + cfg.seconds - cfg.quiet
            for i in range(PRODUCERS):
                fleet.producer(i + 1, self.seed * 10 + i, stop_at, self.workdir / f"producer-{i + 1}.jsonl")
            self._chaos(fleet, server, self.t0 + cfg.seconds)
            for member in fleet.members:
                if member.frozen_until is not None:
                    member.frozen_until = 0.0
            self._thaw_due(fleet)
            self._wait_producers(fleet)
            drain = self._drain(fleet, server.url)
            fleet.replace_exited(restart=False)  # notes anything that died on its own before the stop
            fleet.stop(("producer", "worker", "scheduler"), timeout=30)
        finally:
            fleet.cleanup()
            tailer.finish()
            self._clock.close()
        data = self._collect(server.url, tailer, fleet, drain)
        save(data, self.workdir / "evidence.json")
        report = check(data)
        passed = report.passed
        redis_dir = None
        if passed or isinstance(server, LocalCluster):
            server.stop()
        else:
            server.kill()
            redis_dir = server.dir
        logs = [m.proc.log() for m in fleet.members if m.role == "worker"]
        late = sum(len(LATE_REFUSED.findall(log)) for log in logs)
        stopped = sum(len(LOST_STOPPED.findall(log)) for log in logs)
        result = SoakResult(cfg, self.seed, self.workdir, redis_dir, self.actions, fleet.started, self.outage, drain,
                            time.monotonic() - self.t0, late, stopped, report, self.chaos_log, len(fleet.refused))
        (self.workdir / "report.txt").write_text(result.render() + "\n")
        (self.workdir / "chaos.log").write_text("\n".join(self.chaos_log) + "\n")
        return result

    def _note(self, text: str) -> None:
        line = f"[{time.monotonic() - self.t0:6.1f}s] {text}"
        self.chaos_log.append(line)

    def _redis_ms(self) -> int | None:
        """Redis's clock now, or None while it is down."""
        try:
            assert self._clock is not None
            seconds, micros = self._clock.time()
            return int(seconds) * 1000 + int(micros) // 1000
        except (redis.RedisError, AssertionError):
            return None

    def _fault(self, kind: str, target: str, ms: int | None = None) -> None:
        self.faults.append({"kind": kind, "target": target, "ms": ms if ms is not None else self._redis_ms()})

    def _sample_running(self) -> None:
        """Once a second: no task may sit in running with a lease expired STALE_AFTER ago
        (a reaper is always alive, or being restarted). Silent while Redis is down."""
        if time.monotonic() < self._next_sample or self._clock is None:
            return
        self._next_sample = time.monotonic() + 1.0
        now = self._redis_ms()
        if now is None:
            return
        limit = now - round((self.config.lease + STALE_AFTER) * 1000)
        with contextlib.suppress(redis.RedisError):
            for queue in QUEUES:
                for member, score in self._clock.zrangebyscore(QueueKeys(queue).running, "-inf", limit,
                                                               withscores=True):
                    self.stale.append(f"{queue} running held {member.decode()} at {now}, its lease expired at "
                                      f"{score:.0f} ({(now - score) / 1000:.1f} s before)")

    def _thaw_due(self, fleet: Fleet) -> None:
        for member in fleet.thaw_due(time.monotonic()):
            self._fault("thaw", member.name)
            self._note(f"SIGCONT {member.name}")

    def _chaos(self, fleet: Fleet, server: LocalRedis | LocalCluster, until: float) -> None:
        cfg = self.config
        rng = self.rng
        redis_at = self.t0 + cfg.seconds * rng.uniform(*cfg.redis_at)
        first = list(ACTIONS)  # every kind once early on, then at random
        rng.shuffle(first)
        next_at = time.monotonic() + rng.uniform(*cfg.chaos_every)
        next_progress = time.monotonic() + cfg.progress_every
        redis_done = False
        while (now := time.monotonic()) < until:
            self._thaw_due(fleet)
            self._sample_running()
            fleet.replace_exited()
            if not redis_done and now >= redis_at:
                if isinstance(server, LocalCluster):
                    self._fail_over(server)
                else:
                    self._restart_redis(server)
                redis_done = True
            elif now >= next_at:
                kind = first.pop(0) if first else rng.choices(list(ACTIONS), weights=list(ACTIONS.values()))[0]
                self._act(fleet, kind)
                next_at = time.monotonic() + rng.uniform(*cfg.chaos_every)
            if now >= next_progress:
                self._progress(server.url)
                next_progress = now + cfg.progress_every
            time.sleep(0.05)

    def _act(self, fleet: Fleet, kind: str) -> None:
        rng = self.rng
        role = "scheduler" if kind == "kill9_scheduler" else "worker"
        candidates = fleet.live(role, frozen=False)
        if not candidates:
            self._note(f"{kind}: no candidate, skipped")
            return
        if role == "worker":  # a fault that hits running tasks: prefer busy workers
            candidates = self._busy(fleet.redis_url, candidates) or candidates
        target = rng.choice(candidates)
        self._fault("freeze" if kind == "freeze_worker" else "kill9", target.name)
        if kind == "kill9_worker":
            fleet.kill9(target)
            new = fleet.worker(target.pool or "thread")
            self._note(f"kill -9 {target.name} (pid {target.proc.pid}); started {new.name}")
        elif kind == "kill9_scheduler":
            fleet.kill9(target)
            new = fleet.scheduler()
            self._note(f"kill -9 {target.name} (pid {target.proc.pid}); started {new.name}")
        else:
            seconds = self.config.lease + rng.uniform(*self.config.freeze_extra)
            fleet.freeze(target, time.monotonic() + seconds)
            self._note(f"SIGSTOP {target.name} (pid {target.proc.pid}) for {seconds:.1f} s")
        self.actions[kind] += 1

    @staticmethod
    def _busy(url: str, workers: list[Member]) -> list[Member]:
        """The workers whose last heartbeat reported running tasks (none when Redis cannot say)."""
        client = sync_client(url)
        try:
            pipe = client.pipeline(transaction=False)
            for member in workers:
                pipe.hget(QueueKeys(POOLS[member.pool or "thread"][1][0]).worker(member.name), "running")
            return [m for m, n in zip(workers, pipe.execute(), strict=True) if int(n or 0) > 0]
        except redis.RedisError:
            return []
        finally:
            client.close()

    def _restart_redis(self, server: LocalRedis) -> None:
        outage = self.rng.uniform(*self.config.redis_outage)
        started = time.monotonic()
        self._fault("redis_down", "redis-server")
        server.kill()
        self._note(f"kill -9 redis-server; restarting on its AOF in {outage:.1f} s")
        time.sleep(outage)
        server.start()  # same port, same directory: it loads the append-only file
        self.outage = time.monotonic() - started
        self._fault("redis_up", "redis-server")
        self.actions["redis_restart"] += 1
        self._note(f"redis-server back after {self.outage:.1f} s")

    def _fail_over(self, cluster: LocalCluster) -> None:
        """kill -9 the master of the busiest queue; its replica takes over; the old master
        comes back as a replica once the cluster is whole again."""
        victim = cluster.master_of(QueueKeys(QUEUES[0]).pending)
        started = time.monotonic()
        self._fault("redis_down", f"master :{victim.port}")
        victim.kill()
        self._note(f"kill -9 the master of {QUEUES[0]} (port {victim.port}); waiting for its replica")
        cluster.wait_ok()
        self.outage = time.monotonic() - started
        self._fault("redis_up", "promoted replica")
        self.actions["master_failover"] += 1
        self._note(f"a replica took over after {self.outage:.1f} s; the old master restarts as a replica")
        victim.start()

    def _progress(self, url: str) -> None:
        try:
            client = sync_client(url)
            try:
                totals: Counter[str] = Counter()
                for queue in QUEUES:
                    stats = client.hgetall(QueueKeys(queue).stats)
                    for name in ("enqueued", "succeeded", "failed", "reaped"):
                        totals[name] += int(stats.get(name.encode(), 0))
            finally:
                client.close()
        except redis.RedisError as exc:
            self.say(f"[soak {time.monotonic() - self.t0:5.0f}s] Redis unavailable: {exc}")
            return
        faults = sum(self.actions.values())
        self.say(f"[soak {time.monotonic() - self.t0:5.0f}s] enqueued {totals['enqueued']}, succeeded "
                 f"{totals['succeeded']}, failed {totals['failed']}, reaped {totals['reaped']}; {faults} faults")

    def _wait_producers(self, fleet: Fleet) -> None:
        deadline = time.monotonic() + 30
        while fleet.live("producer") and time.monotonic() < deadline:
            time.sleep(0.1)
        late = fleet.live("producer")
        if late:
            fleet.unexpected += [f"{m.name} still enqueueing 30 s after its stop time" for m in late]
            fleet.stop(("producer",), timeout=10)

    def _drain(self, fleet: Fleet, url: str) -> float | None:
        """Seconds until pending, scheduled and running are empty twice in a row; None past the deadline."""
        start = time.monotonic()
        deadline = start + self.config.drain_timeout
        client = sync_client(url)
        empty = 0
        try:
            while time.monotonic() < deadline:
                self._thaw_due(fleet)
                self._sample_running()
                fleet.replace_exited()
                try:
                    pipe = client.pipeline(transaction=False)
                    for queue in QUEUES:
                        keys = QueueKeys(queue)
                        pipe.zcard(keys.pending).zcard(keys.scheduled).zcard(keys.retrying).zcard(keys.running)
                    left = sum(pipe.execute())
                except redis.RedisError:
                    left = -1
                empty = empty + 1 if left == 0 else 0
                if empty >= 2:
                    return time.monotonic() - start
                time.sleep(0.5)
        finally:
            client.close()
        return None

    # --------------------------------------------------------------- evidence

    def _collect(self, url: str, tailer: EventTailer, fleet: Fleet, drain: float | None) -> Collected:
        requests = []
        for i in range(PRODUCERS):
            path = self.workdir / f"producer-{i + 1}.jsonl"
            if path.exists():
                requests += [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
        client = sync_client(url)
        try:
            records: dict[str, dict[str, str]] = {}
            indexes: dict[str, dict[str, dict[str, float]]] = {}
            added: dict[str, int] = {}
            for queue in QUEUES:
                keys = QueueKeys(queue)
                names = [k.decode() for k in client.scan_iter(match=keys.task("*"), count=1000)]
                for start in range(0, len(names), 500):
                    chunk = names[start : start + 500]
                    pipe = client.pipeline(transaction=False)
                    for name in chunk:
                        pipe.hgetall(name)
                    for name, raw in zip(chunk, pipe.execute(), strict=True):
                        fields = {k.decode(): v.decode() for k, v in raw.items()}
                        records[name.rsplit(":", 1)[1]] = {**fields, "queue": queue}  # its key's (#18)
                indexes[queue] = {
                    index: {m.decode(): s for m, s in client.zrange(getattr(keys, index), 0, -1, withscores=True)}
                    for index in ("pending", "scheduled", "retrying", "running", "failed", "done", "cancelled")
                }
                with contextlib.suppress(redis.ResponseError):  # no stream: nothing was ever added
                    added[queue] = int(client.xinfo_stream(keys.events)["entries-added"])
            entries = [orjson.loads(raw) for raw in client.lrange(ATTEMPTS_KEY, 0, -1)]
            seconds, micros = client.time()
            now_ms = seconds * 1000 + micros // 1000
        finally:
            client.close()
        return Collected(
            requests=requests, records=records, entries=entries, events=tailer.events, indexes=indexes,
            now_ms=now_ms, events_read=dict(tailer.read), events_added=added, unexpected_exits=fleet.unexpected,
            drained=drain is not None, drain_timeout=self.config.drain_timeout, faults=self.faults, stale=self.stale,
            lease_ms=round(self.config.lease * 1000),
        )


def _say(text: str) -> None:
    print(text, flush=True)


def run_soak(config: SoakConfig, say: Callable[[str], None] = _say) -> SoakResult:
    return Soak(config, say).run()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/chaos",
        description="Chaos soak: real workers, schedulers and producers on a private Redis, killed, frozen and "
        "restarted at random; then every invariant is checked. Exit 0 only when all hold.",
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="Length of the chaos window (default 10).")
    parser.add_argument("--seed", type=int, help="Seed of the fault schedule and the task mix (default random).")
    parser.add_argument("--rate", type=float, default=SoakConfig.rate, help="Tasks a second per producer.")
    parser.add_argument("--workdir", type=Path, help="Where logs and evidence go (default a new temporary dir).")
    parser.add_argument("--cluster", action="store_true",
                        help="Run on a local Redis Cluster (3 masters, 3 replicas); the Redis fault kills a master.")
    parser.add_argument("--durability", choices=("fast", "replicated"), default="fast",
                        help="Settings.durability of every process (replicated: enqueue and complete wait for a "
                        "replica).")
    parser.add_argument("--recheck", type=Path, metavar="DIR", help="Only check the evidence of an earlier run's DIR.")
    args = parser.parse_args(argv)
    if args.recheck is not None:
        report = check(load(args.recheck / "evidence.json"))
        for inv in report.invariants:
            print("\n".join(inv.lines()))
        return 0 if report.passed else 1
    if args.minutes <= 0:
        parser.error("--minutes must be positive")
    seconds = args.minutes * 60
    if seconds < 60:
        config = SoakConfig.short(seconds=seconds, seed=args.seed, rate=args.rate, workdir=args.workdir,
                                  quiet=min(6.0, seconds / 4), cluster=args.cluster,
                                  durability=args.durability)
    else:
        config = SoakConfig(seconds=seconds, seed=args.seed, rate=args.rate, workdir=args.workdir,
                            cluster=args.cluster, durability=args.durability)
    result = run_soak(config)
    print(result.render(), flush=True)
    return 0 if result.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
