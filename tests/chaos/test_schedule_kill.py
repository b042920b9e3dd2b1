"""Issue #15's kill test: three ``orch scheduler``s killed -9 in a loop fire each tick exactly once.

The run and the ledger are ``schedule_kill``'s (also ``scripts/schedule_kill``, which prints
the ledger summary). The 60 s run is slow; a 10 s run with one blackout stays in the quick
loop, and so do the checks that the ledger catches a duplicate, a missing tick and a
policy not followed (written into Redis by hand).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from orchestrator.keys import QueueKeys
from orchestrator.schedules import tick_task_id
from tests.chaos.schedule_kill import (
    SCHEDULES,
    KillConfig,
    Ledger,
    Outage,
    events,
    ledger,
    run_kill,
    scaled_blackouts,
)


def check(seconds: float, tmp_path: Path) -> None:
    report = run_kill(KillConfig(seconds=seconds, blackouts=scaled_blackouts(seconds)), tmp_path)
    summary = "\n".join(report.lines())
    print(summary)
    assert report.ok, summary
    assert report.outages, "the run must have had an outage"
    latest = next(ledger for ledger in report.ledgers if ledger.catch_up == "latest")
    assert latest.skipped, "catch_up=latest must have skipped ticks during the blackouts:\n" + summary


def test_schedulers_killed_for_10_s_fire_each_tick_once(tmp_path: Path) -> None:
    check(10.0, tmp_path)


@pytest.mark.slow
def test_schedulers_killed_for_60_s_fire_each_tick_once(tmp_path: Path) -> None:
    check(60.0, tmp_path)


# ------------------------------------------------------ the ledger can fail

BASE = 1_800_000_000_000
CREATED = BASE + 500  # ticks BASE + 1000 .. BASE + 10000 up to END
END = BASE + 10_400
OUTAGE = Outage(start=BASE + 3200, sure_start=BASE + 3300, sure_end=BASE + 5800, end=BASE + 6200)
GOOD = {BASE + i * 1000: "fired" for i in range(1, 11)} | {BASE + 4000: "skipped", BASE + 5000: "skipped"}


def write(r: redis.Redis, outcomes: dict[int, str], *, extra_enqueued: int | None = None) -> Ledger:
    """A schedule's trace as the engine leaves it (tasks, events, counters), then its ledger."""
    spec = SCHEDULES[0]  # catch_up="latest"
    keys = QueueKeys(spec.queue)
    counts = {"fired": 0, "caught_up": 0, "skipped": 0}
    for tick, outcome in sorted(outcomes.items()):
        task = tick_task_id(spec.id, tick)
        if outcome != "skipped":
            r.hset(keys.task(task), mapping={"state": "PENDING"})
            r.xadd(keys.events, {"event": "enqueued", "task": task})
        r.xadd(keys.events, {"event": "tick", "schedule": spec.id, "tick": tick, "outcome": outcome, "task": task})
        counts[outcome] += 1
    if extra_enqueued is not None:
        r.xadd(keys.events, {"event": "enqueued", "task": tick_task_id(spec.id, extra_enqueued)})
    r.hset(keys.schedule(spec.id), mapping=counts)
    return ledger(r, spec, CREATED, END, [OUTAGE], events(r, spec.queue))


def figures(found: Ledger) -> tuple[int, int, int, int, int]:
    return found.expected, found.fired, found.skipped, found.duplicates, found.missing


def test_ledger_of_a_correct_trace(r: redis.Redis) -> None:
    found = write(r, GOOD)
    assert (figures(found), found.problems) == ((10, 8, 2, 0, 0), [])


def test_ledger_counts_a_duplicate(r: redis.Redis) -> None:
    found = write(r, GOOD, extra_enqueued=BASE + 7000)
    assert figures(found) == (10, 8, 2, 1, 0) and found.problems


def test_ledger_counts_a_missing_tick(r: redis.Redis) -> None:
    found = write(r, {t: o for t, o in GOOD.items() if t != BASE + 8000})
    assert figures(found) == (10, 7, 2, 0, 1) and found.problems


def test_ledger_refuses_more_skips_than_the_policy_makes(r: redis.Redis) -> None:
    found = write(r, GOOD | {BASE + 6000: "skipped"})  # latest fires the newest missed tick
    assert figures(found) == (10, 7, 3, 0, 0) and any("the policy keeps the 1 newest" in p for p in found.problems)


def test_ledger_refuses_fewer_skips_than_the_policy_makes(r: redis.Redis) -> None:
    found = write(r, GOOD | {BASE + 4000: "caught_up", BASE + 5000: "caught_up"})
    assert figures(found) == (10, 10, 0, 0, 0) and any("certainly missed" in p for p in found.problems)
