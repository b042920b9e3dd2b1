"""Periodic schedules on real processes (#15): ``orch scheduler`` and ``orch worker`` started
by ``procs.py``, ``every=1`` in real time, each test a few seconds.

- Two schedulers whose wall clocks disagree by twenty minutes (one 600 s ahead, one 600 s
  behind, through the sitecustomize of the clock-skew fault test) fire each tick once, on
  Redis's clock: the tick ledger has consecutive seconds, each once, each fired when it fell;
  a worker 600 s behind runs the ticks' tasks as they come.
- ``overlap="skip"`` with a task that runs 2.5 s: the ticks while it runs are skipped
  (counted as skipped), and no two runs overlap (their start and end, pushed to one Redis
  list in the order they happen, alternate).
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from orchestrator import Orchestrator
from orchestrator.redis_local import LocalRedis
from orchestrator.schedules import tick_task_id
from tests.chaos.test_faults import SITECUSTOMIZE
from tests.integration.procs import Procs, wait_for


def fired_ticks(procs: Procs, sid: str) -> list[int]:
    """The ticks of ``sid`` fired or caught up, in the order their events were written."""
    return [
        int(e["tick"]) for e in procs.events("tick")
        if e["schedule"] == sid and e["outcome"] in ("fired", "caught_up")
    ]


def test_schedulers_with_skewed_clocks_fire_each_tick_once_on_redis_time(
    app: Orchestrator, redis_server: LocalRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))
    with Procs(redis_server.url, tmp_path) as procs:
        started = []
        for name, skew in (("ahead", 600), ("behind", -600)):
            monkeypatch.setenv("TEST_CLOCK_SKEW", str(skew))
            started.append(procs.scheduler(f"scheduler-{name}", interval=0.02))
        started.append(procs.worker("worker-behind", ready=False))  # (TEST_CLOCK_SKEW still -600)
        for proc in started:
            wait_for(lambda p=proc: "clock skewed by" in p.log(), f"{proc.name} to skew its clock", alive=[proc])
        wait_for(lambda: all("Started" in p.log() for p in started[:2]), "both schedulers to start", alive=started)
        app.schedule("skewed", "tests:add", every=1, args=[1, 1])  # from here on a scheduler is always up

        def done() -> list[int]:
            ticks = fired_ticks(procs, "skewed")
            ids = [tick_task_id("skewed", t) for t in ticks]
            return ticks if len(ticks) >= 4 and procs.all_in(ids, "SUCCESS") else []

        wait_for(done, "four ticks to fire and their tasks to succeed", 10, alive=started)
        for proc in started[:2]:
            proc.kill9()
        ticks = fired_ticks(procs, "skewed")
        skipped = [e for e in procs.events("tick") if e["outcome"] == "skipped"]
        ran = {t: procs.record(tick_task_id("skewed", t)) for t in ticks}
    assert skipped == [], "a tick was skipped though two schedulers ran all along"
    assert ticks == sorted(set(ticks)), f"a tick fired twice: {ticks}"
    assert [b - a for a, b in itertools.pairwise(ticks)] == [1000] * (len(ticks) - 1), f"ticks missed: {ticks}"
    for i, tick in enumerate(ticks):  # fired when it fell on Redis's clock, not 600 s early or late
        created = int(app.redis.hget(app.keys("default").task(tick_task_id("skewed", tick)), "created_at"))
        bound = 5_000 if i == 0 else 1_000  # the first one waited for the schedulers to start
        assert 0 <= created - tick < bound, f"tick {tick} fired {created - tick} ms after it fell"
    [info] = app.schedules()
    assert info.fired == len(ticks) and info.caught_up == 0 and info.skipped == 0
    for tick, record in ran.items():  # the skewed worker ran them, on Redis's clock too
        if record.get("state") == "SUCCESS":
            assert 0 <= int(record["started_at"]) - int(record["created_at"]) < 5_000, (tick, record)


def test_overlap_skip_skips_the_ticks_while_a_slow_run_lasts(
    app: Orchestrator, redis_server: LocalRedis, tmp_path: Path
):
    app.schedule("slow", "tests:sleep", every=1, args=[2.5], overlap="skip")
    r = app.redis
    with Procs(redis_server.url, tmp_path) as procs:
        worker = procs.worker("w1", concurrency=4)  # room for overlapping runs, were they allowed
        scheduler = procs.scheduler(interval=0.02)
        alive = [worker, scheduler]

        def runs(event: str) -> list[str]:
            return [a.task_id for a in procs.attempts() if a.event == event]

        wait_for(lambda: len(runs("start")) >= 2, "a second run to start", 10, alive=alive)
        ticks = app.queue("default").metrics().schedule_ticks["slow"]
        order = [(a.event, a.task_id) for a in procs.attempts()]
        events = [e for e in procs.events("tick") if e["schedule"] == "slow"]
    first, second = [task_id for event, task_id in order if event == "start"][:2]
    assert first != second
    assert order[:3] == [("start", first), ("end", first), ("start", second)], f"runs overlapped: {order}"
    fired = [int(e["tick"]) for e in events if e["outcome"] == "fired"]
    skipped = {int(e["tick"]) for e in events if e["outcome"] == "skipped"}
    assert [tick_task_id("slow", t) for t in fired[:2]] == [first, second]
    assert fired[1] - fired[0] >= 3_000, f"a tick fired while the 2.5 s run lasted: {fired}"
    between = set(range(fired[0] + 1_000, fired[1], 1_000))
    assert between <= skipped, f"ticks {sorted(between - skipped)} neither fired nor skipped"
    assert ticks.get("skipped", 0) >= len(between) >= 2 and ticks.get("caught_up", 0) == 0, ticks
    assert r.llen("test:attempts") >= 3
