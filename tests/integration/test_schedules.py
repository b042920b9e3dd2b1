"""Periodic schedules end to end: a real ``orch scheduler`` fires ``every=1``; passes of
in-process schedulers with the scripts' clock moved (``clock_offset_ms``) catch up after an
outage by the policy, and two of them racing fire each tick once; the operator API and
``orch schedules`` declare, list, pause and remove.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from orchestrator import Orchestrator, SchedulerSettings, Settings
from orchestrator.cli import orch
from orchestrator.errors import InvalidSchedule, ScheduleNotFound
from orchestrator.redis_local import LocalRedis
from orchestrator.scheduler import Scheduler
from orchestrator.schedules import tick_task_id
from tests.integration.passes import scheduler_passes
from tests.integration.procs import Procs, wait_for


def at(redis_server: LocalRedis, offset_ms: int) -> Orchestrator:
    return Orchestrator(settings=Settings(redis_url=redis_server.url), clock_offset_ms=offset_ms)


def scheduler(app: Orchestrator) -> Scheduler:
    return Scheduler(app, SchedulerSettings(queues=("default",), interval=0.01))


def pending(r: redis.Redis, app: Orchestrator) -> list[str]:
    return sorted(m.decode() for m in r.zrange(app.keys("default").pending, 0, -1))


@pytest.fixture
def clock(redis_server: LocalRedis) -> Iterator[list[Orchestrator]]:
    made: list[Orchestrator] = []
    yield made
    for app in made:
        app.close()


def test_every_one_second_fires_by_a_real_scheduler(app: Orchestrator, redis_server: LocalRedis, tmp_path: Path):
    assert app.schedule("tick", "tests:add", every=1, args=[1, 2]) == "created"
    with Procs(redis_server.url, tmp_path) as procs:
        proc = procs.scheduler()
        wait_for(lambda: len(app.queue("default").tasks("pending").tasks) >= 2, "two ticks to fire", 10, alive=[proc])
    [info] = app.schedules()
    assert info.fired >= 2 and info.last_tick is not None and info.next_ms is not None
    assert info.next_ms > info.last_tick
    task = app.get_task(tick_task_id("tick", info.last_tick))
    assert task.name == "tests:add" and task.args == [1, 2]


def test_catch_up_latest_after_an_outage_fires_one_and_skips_the_rest(
    app: Orchestrator, redis_server: LocalRedis, r: redis.Redis, clock: list[Orchestrator]
):
    app.schedule("s", "tests:add", every=1)  # catch_up="latest"
    clock.append(later := at(redis_server, 1_500))
    scheduler_passes(scheduler(later))
    first = app.schedules()[0]
    assert first.fired == 1 and len(pending(r, app)) == 1
    clock.append(outage := at(redis_server, 31_500))  # 30 s without a scheduler
    a, b = scheduler(outage), scheduler(outage)
    reports = scheduler_passes(a, b)  # the second finds nothing due (or loses the compare-and-set)
    assert sum(rep.schedule_tasks for rep in reports) == 1
    info = app.schedules()[0]
    assert info.fired == 2 and info.skipped >= 28 and info.caught_up == 0
    assert len(pending(r, app)) == 2


def test_catch_up_all_fires_max_catch_up_and_skip_fires_none(
    app: Orchestrator, redis_server: LocalRedis, r: redis.Redis, clock: list[Orchestrator]
):
    app.schedule("all", "tests:add", every=1, catch_up="all", max_catch_up=5)
    app.schedule("skip", "tests:add", every=1, catch_up="skip", queue="other")
    clock.append(outage := at(redis_server, 30_500))
    scheduler_passes(Scheduler(outage, SchedulerSettings(queues=("default", "other"), interval=0.01)))
    by_id = {s.id: s for s in app.schedules()}
    assert (by_id["all"].fired, by_id["all"].caught_up) == (1, 4)
    assert len(pending(r, app)) == 5
    assert by_id["skip"].fired + by_id["skip"].caught_up <= 1  # only a tick on time would fire


def test_declaring_again_changes_nothing_and_a_removed_schedule_never_fires(
    app: Orchestrator, redis_server: LocalRedis, r: redis.Redis, clock: list[Orchestrator]
):
    assert app.schedule("s", "tests:add", every=1) == "created"
    assert app.schedule("s", "tests:add", every=1) == "unchanged"
    assert app.schedule("s", "tests:add", every=2) == "updated"
    with pytest.raises(InvalidSchedule):
        app.schedule("s", "tests:add", every=1, queue="elsewhere")
    with pytest.raises(InvalidSchedule):
        app.schedule("bad", "tests:add", every=0.5)
    assert app.pause_schedule("s") is True
    clock.append(later := at(redis_server, 10_000))
    scheduler_passes(scheduler(later))
    assert pending(r, app) == []
    assert app.resume_schedule("s") is True
    app.remove_schedule("s")
    scheduler_passes(scheduler(later))
    assert pending(r, app) == [] and app.schedules() == []
    with pytest.raises(ScheduleNotFound):
        app.remove_schedule("s")


def test_periodic_declarations_sync(app: Orchestrator):
    @app.periodic(every=60)
    @app.task(name="tests:periodic")
    def job() -> None: ...

    @app.periodic(cron="0 3 * * *", tz="Europe/Paris", name="nightly")
    @app.task(name="tests:nightly")
    def nightly() -> None: ...

    assert app.sync_schedules() == {"nightly": "created", "tests:periodic": "created"}
    assert app.sync_schedules() == {"nightly": "unchanged", "tests:periodic": "unchanged"}
    assert {s.id: s.spec.tz for s in app.schedules()} == {"nightly": "Europe/Paris", "tests:periodic": "UTC"}


def test_orch_schedules_commands(app: Orchestrator, redis_server: LocalRedis):
    runner = CliRunner()

    def cli(*args: str) -> str:
        result = runner.invoke(orch, ["--redis-url", redis_server.url, "schedules", *args])
        assert result.exit_code == 0, result.output
        return result.output

    assert "created" in cli("add", "s1", "tests:add", "--every", "5", "--args", "[1, 2]")
    assert "s1" in cli("list") and "every 5 s" in cli("list")
    task_id = cli("run-now", "s1").strip()
    assert app.get_task(task_id).args == [1, 2]
    assert "paused" in cli("pause", "s1")
    assert "resumed" in cli("resume", "s1")
    status = runner.invoke(orch, ["--redis-url", redis_server.url, "status"])
    assert status.exit_code == 0 and "schedule s1 -> default: next 20" in status.output
    assert "removed" in cli("remove", "s1")
    assert "no schedules" in cli("list")
    result = runner.invoke(orch, ["--redis-url", redis_server.url, "schedules", "remove", "s1"])
    assert result.exit_code != 0


def test_orch_scheduler_app_declares_the_modules_periodic_schedules(
    app: Orchestrator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from orchestrator.cli.services import _declare_schedules

    (tmp_path / "periodic_mod.py").write_text(
        "from orchestrator import Orchestrator\n"
        "app = Orchestrator()\n"
        "@app.periodic(every=30, catch_up='all')\n"
        "@app.task(name='periodic_mod:job')\n"
        "def job() -> None: ...\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    _declare_schedules(app, ("periodic_mod",))
    [info] = app.schedules()
    assert (info.id, info.spec.every, info.spec.catch_up) == ("periodic_mod:job", 30, "all")
    _declare_schedules(app, ("periodic_mod",))  # again at the next start: unchanged
    assert app.schedules()[0].created_at == info.created_at
    app.schedule("gone", "tests:add", every=5)
    assert app.prune_schedules(dry_run=True) == ["gone"]
    assert app.prune_schedules() == ["gone"]
    assert [s.id for s in app.schedules()] == ["periodic_mod:job"]
    app.schedule("old", "tests:add", every=5)
    url = app.settings.redis_url
    result = CliRunner().invoke(orch, ["--redis-url", url, "schedules", "prune", "-A", "periodic_mod"])
    assert result.exit_code == 0 and "schedule old: removed" in result.output, result.output
    assert [s.id for s in app.schedules()] == ["periodic_mod:job"]


def test_tick_counters_reach_queue_metrics_and_prometheus(
    app: Orchestrator, redis_server: LocalRedis, clock: list[Orchestrator]
):
    from orchestrator.server.metrics import exposition

    app.schedule("m:s", "tests:add", every=1, catch_up="all", max_catch_up=2)
    clock.append(outage := at(redis_server, 5_500))
    scheduler_passes(scheduler(outage))
    ticks = app.queue("default").metrics().schedule_ticks
    assert ticks["m:s"]["fired"] == 1 and ticks["m:s"]["caught_up"] == 1 and ticks["m:s"]["skipped"] >= 2
    body, _ = exposition(app)
    assert 'orch_schedule_ticks_total{outcome="fired",queue="default",schedule="m:s"} 1.0' in body.decode()


def redis_ms(r: redis.Redis) -> int:
    seconds, micros = r.time()
    return seconds * 1000 + micros // 1000


def test_catch_up_skip_after_a_30_s_outage_fires_the_current_tick_only_when_on_time(
    app: Orchestrator, redis_server: LocalRedis, r: redis.Redis, clock: list[Orchestrator]
):
    """catch_up="skip": after 30 s without a scheduler, the newest tick fires when it is at
    most 5 s late (every=1: it fell under a second ago), and nothing fires when it is later
    (every=20, the pass 10 s after its newest tick); every missed tick is counted skipped."""
    app.schedule("on-time", "tests:add", every=1, catch_up="skip")
    app.schedule("late", "tests:add", every=20, catch_up="skip", queue="other")
    now = redis_ms(r)
    offset = 30_000 + (10_000 - (now + 30_000) % 20_000) % 20_000  # 30-50 s on, 10 s after a 20 s tick
    clock.append(outage := at(redis_server, offset))
    scheduler_passes(Scheduler(outage, SchedulerSettings(queues=("default", "other"), interval=0.01)))
    by_id = {s.id: s for s in app.schedules()}
    assert (by_id["on-time"].fired, by_id["on-time"].caught_up) == (1, 0)
    assert by_id["on-time"].skipped >= 29
    assert (by_id["late"].fired, by_id["late"].caught_up) == (0, 0)
    assert by_id["late"].skipped >= 1 and by_id["late"].last_tick is not None
    assert (now + offset - by_id["late"].last_tick) >= 9_000  # its newest tick, skipped as late
    assert len(pending(r, app)) == 1 and r.zcard(app.keys("other").pending) == 0


def test_an_upsert_changing_the_cron_takes_effect_at_the_next_tick(
    app: Orchestrator, redis_server: LocalRedis, r: redis.Redis, clock: list[Orchestrator]
):
    """*/10 then */3 minutes: after the change the next tick is the new cron's first one
    after the change; the new cron's ticks before the change are not caught up, and the
    last fired tick is kept (no reset, no duplicate)."""
    app.schedule("c", "tests:add", cron="*/10 * * * *")
    now = redis_ms(r)
    ten = (now // 600_000 + 1) * 600_000  # the old cron's first tick
    clock.append(first := at(redis_server, ten - now + 500))
    scheduler_passes(scheduler(first))
    assert [s.last_tick for s in app.schedules()] == [ten] and pending(r, app) == [tick_task_id("c", ten)]
    change = ten + 7 * 60_000  # seven minutes on, two */3 ticks have passed since the old cron's tick
    clock.append(deploy := at(redis_server, change - now))
    assert deploy.schedule("c", "tests:add", cron="*/3 * * * *") == "updated"
    [info] = app.schedules()
    three = (change // 180_000 + 1) * 180_000  # the new cron's first tick after the change
    assert info.last_tick == ten and info.next_ms == three
    clock.append(before := at(redis_server, change - now + 1_000))
    scheduler_passes(scheduler(before))  # a pass right after the change: nothing due
    assert len(pending(r, app)) == 1
    clock.append(after := at(redis_server, three - now + 500))
    scheduler_passes(scheduler(after))
    [info] = app.schedules()
    assert (info.fired, info.caught_up, info.skipped, info.last_tick) == (2, 0, 0, three)
    assert pending(r, app) == sorted([tick_task_id("c", ten), tick_task_id("c", three)])


def test_daylight_saving_through_the_engine_with_the_clock_moved(
    app: Orchestrator, redis_server: LocalRedis, r: redis.Redis, clock: list[Orchestrator]
):
    """The scheduler's passes on the scripts' clock moved to the changes of 2027: ``30 2 * * *``
    in Paris fires once at 03:00 CEST on the day 02:30 is skipped and once at the first 02:30
    of the repeated hour; ``0 * * * *`` in New York fires at 01:00 EDT and at 01:00 EST
    (celery#10107), none skipped, none twice."""
    from datetime import datetime, timezone

    def ms(*when: int) -> int:
        return int(datetime(*when, tzinfo=timezone.utc).timestamp() * 1000)

    def at_utc(*when: int, late_ms: int = 500) -> Orchestrator:
        moved = at(redis_server, ms(*when) + late_ms - redis_ms(r))
        clock.append(moved)
        return moved

    def fired_at(*when: int) -> list[int]:
        scheduler_passes(Scheduler(at_utc(*when), SchedulerSettings(queues=("paris", "ny"), interval=0.01)))
        return sorted(t for s in at_utc(*when).schedules() for t in [s.last_tick] if t is not None)

    def ticks() -> dict[str, tuple[int, int, int, int | None]]:
        return {s.id: (s.fired, s.caught_up, s.skipped, s.last_tick) for s in app.schedules()}

    at_utc(2027, 3, 27, 12).schedule("spring", "tests:add", cron="30 2 * * *", tz="Europe/Paris", queue="paris")
    fired_at(2027, 3, 28, 0, 59, 59)
    assert ticks()["spring"] == (0, 0, 0, None)  # 02:30 CET never came: 02:00 became 03:00
    fired_at(2027, 3, 28, 1)  # 03:00 CEST, right after the change
    assert ticks()["spring"] == (1, 0, 0, ms(2027, 3, 28, 1))
    fired_at(2027, 3, 29, 0, 30)  # the next day at 02:30 CEST
    assert ticks()["spring"] == (2, 0, 0, ms(2027, 3, 29, 0, 30))

    at_utc(2027, 10, 30, 12).schedule("autumn", "tests:add", cron="30 2 * * *", tz="Europe/Paris", queue="paris")
    fired_at(2027, 10, 31, 0, 30)  # 02:30 CEST, the first time
    fired_at(2027, 10, 31, 1, 30)  # 02:30 CET, the repeated hour: no second run
    assert ticks()["autumn"] == (1, 0, 0, ms(2027, 10, 31, 0, 30))
    fired_at(2027, 11, 1, 1, 30)  # the next day at 02:30 CET
    assert ticks()["autumn"] == (2, 0, 0, ms(2027, 11, 1, 1, 30))

    at_utc(2027, 11, 7, 3, 30).schedule("hourly", "tests:add", cron="0 * * * *", tz="America/New_York", queue="ny")
    for hour in (4, 5, 6, 7):  # 00:00 EDT, 01:00 EDT, 01:00 EST, 02:00 EST
        fired_at(2027, 11, 7, hour)
    assert ticks()["hourly"] == (4, 0, 0, ms(2027, 11, 7, 7))
    assert r.zcard(app.keys("ny").pending) == 4  # one task per tick (spring, meanwhile, caught up its own)


def test_the_asyncio_twins_pause_resume_and_run_a_schedule_now(app: Orchestrator) -> None:
    app.schedule("s", "tests:add", every=60, args=[1, 2], priority=2)

    async def scenario() -> tuple[list[bool], str]:
        try:
            changed = [await app.apause_schedule("s"), await app.apause_schedule("s")]
            assert [s.paused for s in app.schedules()] == [True]
            changed += [await app.aresume_schedule("s"), await app.aresume_schedule("s")]
            handle = await app.arun_schedule_now("s")
            for twin in (app.apause_schedule, app.aresume_schedule, app.arun_schedule_now):
                with pytest.raises(ScheduleNotFound):
                    await twin("ghost")
            return changed, handle.id
        finally:
            await app.aclose()

    changed, task_id = asyncio.run(scenario())
    assert changed == [True, False, True, False]
    task = app.get_task(task_id)
    assert (task.name, task.args, task.priority) == ("tests:add", [1, 2], 2)
    [info] = app.schedules()
    assert not info.paused and info.last_tick is None  # run now leaves its ticks alone
