"""The schedule kill test behind ``scripts/schedule_kill``: schedulers killed -9, then the tick ledger.

Starts three ``orch scheduler`` processes on a private redis-server, declares periodic
schedules firing every second (catch_up "latest", "all", and "all" capped at 3), and for
the run's length kills a scheduler with -9 every fraction of a second (each restarted
after a random short pause), and at planned moments kills all of them for a few seconds
(a blackout). It records, in Redis TIME, every interval during which no scheduler was
serving (started and not killed). Then it lets one finish the last ticks, stops them all,
and reads the ledger from Redis: the task of each tick (``tick_task_id(schedule, tick)``),
the queue's event stream (each task enqueued once) and the schedule's record (its counters).

Every tick of the run must have its task exactly once, apart from ticks the catch-up policy
skipped while no scheduler was serving: those must lie in such an outage, and their number
per outage must be what the policy allows (latest: all but the newest; all: all but the
``max_catch_up`` newest). Owns the kill schedule, the outage timeline and the ledger; the
processes are ``tests.integration.procs``'s. No worker runs: tick tasks stay pending, which
is all the ledger needs. Run ``scripts/schedule_kill [--seconds N] [--seed S]`` or
``python -m tests.chaos.schedule_kill --help``; ``run_kill(KillConfig(...))`` is what the
test calls. Exit code 0 only when the ledger holds.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import redis

from orchestrator import Orchestrator, Settings
from orchestrator.keys import QueueKeys
from orchestrator.redis_local import LocalRedis
from orchestrator.schedules import ScheduleSpec, next_tick, tick_task_id
from tests.integration.procs import Proc, Procs

QUEUE = "default"
TASK = "tests:add"  # never run: no worker takes part
STARTED = "Started:"  # a scheduler logs it once past first contact, just before its first pass
SLACK_MS = 500  # a tick this close to an outage may be skipped by it (kill and start observed late)
SCHEDULES = (
    ScheduleSpec(id="kill-latest", task=TASK, queue=QUEUE, every=1, args=[1, 1]),  # catch_up="latest"
    ScheduleSpec(id="kill-all", task=TASK, queue=QUEUE, every=1, args=[2, 2], catch_up="all"),
    ScheduleSpec(id="kill-all3", task=TASK, queue=QUEUE, every=1, args=[3, 3], catch_up="all", max_catch_up=3),
)


@dataclass(frozen=True)
class KillConfig:
    """One run's shape. Durations in seconds; blackouts as (start after the run began, length)."""

    seconds: float = 60.0
    seed: int | None = None
    schedulers: int = 3
    interval: float = 0.05  # the schedulers' pass interval
    kill_every: tuple[float, float] = (0.2, 0.8)  # pause between two kills of one scheduler
    restart_after: tuple[float, float] = (0.05, 1.0)  # pause before a killed one is started again
    blackouts: tuple[tuple[float, float], ...] = ((10.0, 3.0), (25.0, 6.0), (45.0, 4.0))
    finish_timeout: float = 30.0  # for the last ticks to fire once the kills stop


@dataclass
class Outage:
    """An interval with no scheduler serving, in Redis ms: ``start``..``end`` (generous: from before
    the last kill to when a new one was seen started) and ``sure_start``..``sure_end`` (certain:
    from after the kill returned to before the next one was spawned)."""

    start: int
    sure_start: int
    sure_end: int = 0
    end: int = 0


@dataclass
class Slot:
    """One of the scheduler places: its current process (None while dead) and when it serves from."""

    index: int
    proc: Proc | None = None
    serving_since: float | None = None  # monotonic, once its log says Started
    restart_at: float | None = None  # monotonic, while dead
    generation: int = 0


@dataclass
class Ledger:
    """One schedule's figures and what is wrong with them."""

    schedule: str
    catch_up: str
    expected: int
    fired: int
    skipped: int  # not fired, inside an outage, as many as the policy allows
    duplicates: int
    missing: int  # not fired and not explained by the policy
    counters: dict[str, str]
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        counters = ", ".join(f"{k}={v}" for k, v in self.counters.items())
        return (f"{self.schedule} (catch_up={self.catch_up}): ticks expected {self.expected}, fired {self.fired},"
                f" skipped by policy {self.skipped}, duplicates: {self.duplicates}, missing: {self.missing}"
                f" [record: {counters}]")


@dataclass
class KillReport:
    seconds: float
    seed: int
    kills: int = 0
    starts: int = 0
    outages: list[Outage] = field(default_factory=list)
    ledgers: list[Ledger] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and all(not ledger.problems for ledger in self.ledgers)

    def lines(self) -> list[str]:
        spans = ", ".join(f"{(o.end - o.start) / 1000:.1f} s" for o in self.outages)
        out = [f"schedule kill run: {self.seconds:g} s, seed {self.seed}, {self.kills} kill -9, "
               f"{self.starts} scheduler starts, {len(self.outages)} outages with none serving ({spans})"]
        out += [ledger.line() for ledger in self.ledgers]
        out += [f"PROBLEM {p}" for p in self.problems]
        out += [f"PROBLEM {ledger.schedule}: {p}" for ledger in self.ledgers for p in ledger.problems]
        out.append("OK: every tick exactly once, or skipped by its policy during an outage" if self.ok else "FAILED")
        return out


def redis_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def ticks_between(spec: ScheduleSpec, after_ms: int, until_ms: int) -> list[int]:
    """The ticks in (after_ms, until_ms]."""
    out = []
    tick = next_tick(spec, after_ms)
    while tick <= until_ms:
        out.append(tick)
        tick = next_tick(spec, tick)
    return out


class KillRun:
    """The processes of one run and the outage timeline; ``run`` does the kills."""

    def __init__(self, config: KillConfig, procs: Procs, rng: random.Random, report: KillReport) -> None:
        self.config = config
        self.procs = procs
        self.rng = rng
        self.report = report
        self.slots = [Slot(i) for i in range(config.schedulers)]
        self.open: Outage | None = None

    def now(self) -> int:
        return redis_ms(self.procs.redis)

    def serving(self) -> list[Slot]:
        return [s for s in self.slots if s.proc is not None and s.serving_since is not None]

    def spawn(self, slot: Slot) -> None:
        if self.open is not None and not self.open.sure_end:
            self.open.sure_end = self.now()
        slot.generation += 1
        args = ["scheduler", "--interval", f"{self.config.interval:g}", "-q", QUEUE]
        slot.proc = self.procs.start(f"s{slot.index}-{slot.generation}", args)
        slot.serving_since, slot.restart_at = None, None
        self.report.starts += 1

    def kill(self, slot: Slot, restart_at: float | None) -> None:
        assert slot.proc is not None
        slot.proc.kill9()
        self.report.kills += 1
        slot.proc, slot.serving_since, slot.restart_at = None, None, restart_at

    def blackout(self, length: float) -> None:
        """Kill every scheduler (serving or starting) and start them again after ``length``."""
        start = self.now()
        for slot in self.slots:
            if slot.proc is not None:
                self.kill(slot, None)
        self.open = Outage(start=start, sure_start=self.now())
        restart = time.monotonic() + length
        for slot in self.slots:
            slot.restart_at = restart + self.rng.uniform(0.0, 0.3)

    def observe(self) -> None:
        """Notice schedulers that started serving (closing an outage) or exited by themselves."""
        for slot in self.slots:
            proc = slot.proc
            if proc is None:
                continue
            if proc.returncode is not None:
                self.report.problems.append(f"{proc.name} exited by itself with {proc.returncode}\n{proc.tail()}")
                slot.proc, slot.serving_since, slot.restart_at = None, None, time.monotonic()
                continue
            if slot.serving_since is None and STARTED in proc.log():
                slot.serving_since = time.monotonic()
                if self.open is not None:
                    self.open.end = self.now()
                    self.report.outages.append(self.open)
                    self.open = None

    def start_all(self) -> None:
        for slot in self.slots:
            if slot.proc is None:
                self.spawn(slot)

    def wait_serving(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.serving():
            self.observe()
            if time.monotonic() > deadline:
                raise AssertionError(f"no scheduler started within {timeout:g} s\n"
                                     + "\n".join(s.proc.tail() for s in self.slots if s.proc))
            time.sleep(0.01)

    def run(self) -> None:
        """Kill and restart for ``seconds``; blackouts kill all and start none for their length."""
        config, rng = self.config, self.rng
        began = time.monotonic()
        blackouts = sorted(config.blackouts)
        next_kill = began + rng.uniform(*config.kill_every)
        while (now := time.monotonic()) < began + config.seconds:
            self.observe()
            if blackouts and now >= began + blackouts[0][0]:
                _, length = blackouts.pop(0)
                self.blackout(length)
                next_kill = now + length + 1.0
            for slot in self.slots:
                if slot.proc is None and slot.restart_at is not None and now >= slot.restart_at:
                    self.spawn(slot)
            if now >= next_kill:
                # only a scheduler serving for a while, and never the last one serving: the
                # outages are the blackouts' (a scheduler exiting by itself is a failure)
                ready = [s for s in self.serving() if s.serving_since is not None and now - s.serving_since > 1.0]
                if len(self.serving()) >= 2 and ready:
                    self.kill(rng.choice(ready), now + rng.uniform(*config.restart_after))
                next_kill = now + rng.uniform(*config.kill_every)
            time.sleep(0.01)
        self.start_all()
        self.wait_serving()

    def cleanup(self) -> None:
        for proc in self.procs.started:
            proc.cleanup()


def declare(app: Orchestrator) -> dict[str, int]:
    """Declare the schedules; return each one's creation time (Redis ms, from its record)."""
    created = {}
    for spec in SCHEDULES:
        app.schedule(spec.id, spec.task, every=spec.every, queue=spec.queue, args=spec.args,
                     catch_up=spec.catch_up, max_catch_up=spec.max_catch_up)
        raw = app.redis.hget(QueueKeys(spec.queue).schedule(spec.id), "created_at")
        assert raw is not None, f"schedule {spec.id} has no record after app.schedule"
        created[spec.id] = int(raw)
    return created


def last_tick(client: redis.Redis, spec: ScheduleSpec) -> int:
    raw = client.hget(QueueKeys(spec.queue).schedule(spec.id), "last_tick")
    return int(raw) if raw and raw.isdigit() else 0


def events(client: redis.Redis, queue: str) -> list[dict[str, str]]:
    return [{k.decode(): v.decode() for k, v in fields.items()}
            for _, fields in client.xrange(QueueKeys(queue).events)]


def ledger(client: redis.Redis, spec: ScheduleSpec, created_ms: int, end_ms: int,
           outages: list[Outage], stream: list[dict[str, str]]) -> Ledger:
    """Read one schedule's ledger and check it against its policy and the outages.

    Three witnesses must agree: the tick tasks found, the events (``enqueued`` per task, and
    ``tick`` per tick with its outcome) and the record's counters (fired + caught_up, skipped).
    """
    keys = QueueKeys(spec.queue)
    expected = ticks_between(spec, created_ms, end_ms)
    pipe = client.pipeline(transaction=False)
    for tick in expected:
        pipe.exists(keys.task(tick_task_id(spec.id, tick)))
    fired = {tick for tick, found in zip(expected, pipe.execute(), strict=True) if found}
    ids = {tick_task_id(spec.id, tick) for tick in expected}
    enqueued = Counter(e["task"] for e in stream if e.get("event") == "enqueued" and e.get("task") in ids)
    told = [(int(e["tick"]), e.get("outcome", "")) for e in stream
            if e.get("event") == "tick" and e.get("schedule") == spec.id]
    per_tick = Counter(tick for tick, _ in told)
    duplicates = sum(n - 1 for n in enqueued.values() if n > 1) + sum(n - 1 for n in per_tick.values() if n > 1)
    unfired = [t for t in expected if t not in fired]
    explained = {t for t in unfired if any(o.start - SLACK_MS < t <= o.end + SLACK_MS for o in outages)}
    counters = {k.decode(): v.decode() for k, v in client.hgetall(keys.schedule(spec.id)).items()
                if k.decode() in ("fired", "caught_up", "skipped", "last_tick")}
    result = Ledger(spec.id, spec.catch_up, len(expected), len(fired), len(explained), duplicates,
                    len(unfired) - len(explained), counters)
    problems = result.problems
    if result.missing:
        problems.append(f"ticks neither fired nor in an outage: {sorted(set(unfired) - explained)}")
    if duplicates:
        problems.append(f"more than once: enqueued {[t for t, n in enqueued.items() if n > 1]}, "
                        f"tick events {[t for t, n in per_tick.items() if n > 1]}")
    if set(enqueued) != {tick_task_id(spec.id, t) for t in fired}:
        problems.append("the enqueued events do not match the tick tasks found")
    outcomes = {tick: outcome for tick, outcome in told}
    if {t for t, o in outcomes.items() if o in ("fired", "caught_up")} != fired:
        problems.append("the tick events fired/caught_up do not match the tick tasks found")
    if {t for t, o in outcomes.items() if o == "skipped"} != set(unfired):
        problems.append("the tick events skipped do not match the ticks not fired")
    made = int(counters.get("fired", 0)) + int(counters.get("caught_up", 0))
    if made != len(fired) or int(counters.get("skipped", 0)) != len(unfired):
        problems.append(f"the record counts {made} fired + caught_up and {counters.get('skipped')} skipped, "
                        f"the ledger {len(fired)} and {len(unfired)}")
    keep = spec.max_catch_up if spec.catch_up == "all" else 1  # the newest missed ticks fired ("skip" not run)
    for o in outages:
        window = [t for t in expected if o.start - SLACK_MS < t <= o.end + SLACK_MS]
        sure = [t for t in expected if o.sure_start < t <= o.sure_end]
        skipped = [t for t in window if t not in fired]
        # the catch-up pass came at most SLACK_MS after the outage's end and fired the newest
        # `keep` ticks due then: a tick it skipped has `keep` fired ticks after it by that time
        early = [t for t in skipped if len([f for f in fired if t < f <= o.end + SLACK_MS]) < keep]
        if early:
            problems.append(f"outage {o}: ticks {early} skipped, but the policy keeps the {keep} newest")
        if len(skipped) < len(sure) - keep:
            problems.append(f"outage {o}: only {len(skipped)} skipped of {len(sure)} certainly missed ticks, "
                            f"the policy keeps {keep}")
    return result


def run_kill(config: KillConfig, workdir: Path) -> KillReport:
    """Run once on a private redis-server and return the report (``report.ok``)."""
    seed = config.seed if config.seed is not None else random.randrange(1 << 30)
    report = KillReport(config.seconds, seed)
    server = LocalRedis(appendonly=False).start()
    app = Orchestrator(settings=Settings(redis_url=server.url))
    procs = Procs(server.url, workdir, QUEUE)
    run = KillRun(config, procs, random.Random(seed), report)
    try:
        run.start_all()
        run.wait_serving()
        created = declare(app)
        run.run()
        end_ms = run.now()
        for spec in SCHEDULES:
            last = ticks_between(spec, created[spec.id], end_ms)[-1:]
            deadline = time.monotonic() + config.finish_timeout
            while last and last_tick(procs.redis, spec) < last[0]:
                if time.monotonic() > deadline:
                    report.problems.append(f"{spec.id}: tick {last[0]} not fired within {config.finish_timeout:g} s")
                    break
                time.sleep(0.05)
        run.cleanup()
        stream = events(procs.redis, QUEUE)
        report.ledgers = [ledger(procs.redis, spec, created[spec.id], end_ms, report.outages, stream)
                          for spec in SCHEDULES]
        stray = {raw.decode() for raw in procs.redis.zrange(QueueKeys(QUEUE).pending, 0, -1)}
        stray -= {tick_task_id(spec.id, t) for spec in SCHEDULES for t in ticks_between(spec, created[spec.id], end_ms)}
        if stray:
            report.problems.append(f"tasks that are no tick of the run: {sorted(stray)[:10]}")
        if len(report.outages) < len(config.blackouts):
            report.problems.append(f"{len(report.outages)} outages seen, {len(config.blackouts)} planned")
    finally:
        run.cleanup()
        with contextlib.suppress(Exception):
            procs.redis.close()
        app.close()
        server.stop()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="the run's length (at most 1200: the ledger reads the event stream, capped at 10,000)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--workdir", type=Path, help="keep the schedulers' logs here")
    args = parser.parse_args(argv)
    if not 0 < args.seconds <= 1200:
        parser.error("--seconds must be in (0, 1200]")
    config = KillConfig(seconds=args.seconds, seed=args.seed, blackouts=scaled_blackouts(args.seconds))
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        report = run_kill(config, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="schedule-kill-") as tmp:
            report = run_kill(config, Path(tmp))
    print("\n".join(report.lines()))
    return 0 if report.ok else 1


def scaled_blackouts(seconds: float) -> tuple[tuple[float, float], ...]:
    """The default blackouts of a 60 s run, in each whole minute of the run; one 3 s blackout
    in a shorter run."""
    if seconds >= 60:
        return tuple((minute * 60 + at, length) for minute in range(int(seconds // 60))
                     for at, length in KillConfig.blackouts)
    return ((seconds * 0.4, 3.0),)


if __name__ == "__main__":
    raise SystemExit(main())
