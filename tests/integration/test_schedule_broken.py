"""Schedules whose records were spoiled by hand fail alone (#15, DESIGN principle 8).

More broken schedules than a pass's batch, each spoiled a different way in the record
(bad JSON, a missing field, a field of the wrong type, a counter or a last tick that is
not an integer, a key of another type, a record naming another schedule), must not stop a
healthy schedule of the same queue from firing at every tick: each broken one is set
aside (its index score pushed ahead, an event and a log line naming it), its data left as
it was, and looked at again later, when a fixed one fires again. Passes of in-process
schedulers with the scripts' clock moved, no waiting.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
import redis

from orchestrator import Orchestrator, SchedulerSettings, Settings
from orchestrator.redis_local import LocalRedis
from orchestrator.schedule_engine import SET_ASIDE_MS
from orchestrator.scheduler import PassReport, Scheduler
from orchestrator.schedules import tick_task_id
from tests.integration.passes import scheduler_passes

BATCH = 4
HEALTHY = "z-healthy"  # sorts after the broken ones, which share its score (ties go by member)


def _spoilers(r: redis.Redis, key: Callable[[str], str]) -> list[Callable[[str], None]]:
    def bad_json(sid: str) -> None:
        r.hset(key(sid), "args", "[1, 2")

    def missing_field(sid: str) -> None:
        r.hdel(key(sid), "task")

    def wrong_type(sid: str) -> None:
        r.hset(key(sid), "priority", "high")

    def counter(sid: str) -> None:
        r.hset(key(sid), "fired", "many")

    def last_tick(sid: str) -> None:
        r.hset(key(sid), "last_tick", "soon")

    def not_a_hash(sid: str) -> None:
        r.delete(key(sid))
        r.set(key(sid), "scribbled over")

    def another_id(sid: str) -> None:
        r.hset(key(sid), "id", "someone-else")

    return [bad_json, missing_field, wrong_type, counter, last_tick, not_a_hash, another_id]


def dump(r: redis.Redis, key: str) -> object:
    return r.dump(key)


EVERY_MS = 10_000  # passes 10 s apart on the scripts' clock: real time between them cannot add a tick


def test_broken_schedules_beyond_the_batch_do_not_stop_a_healthy_one(
    app: Orchestrator, redis_server: LocalRedis, r: redis.Redis, caplog: pytest.LogCaptureFixture
):
    keys = app.keys("default")
    spoilers = _spoilers(r, keys.schedule)
    broken = [f"a-broken-{i:02d}" for i in range(2 * BATCH + 3)]  # more than two batches
    for sid in [*broken, HEALTHY]:
        app.schedule(sid, "tests:add", every=EVERY_MS // 1000, args=[1, 2])
    for i, sid in enumerate(broken):
        spoilers[i % len(spoilers)](sid)
    before = {sid: dump(r, keys.schedule(sid)) for sid in broken}

    def one_pass(offset_ms: int) -> PassReport:
        later = Orchestrator(settings=Settings(redis_url=redis_server.url), clock_offset_ms=offset_ms)
        settings = SchedulerSettings(queues=("default",), interval=0.01, batch=BATCH, reap=False, rollups=False)
        [report] = scheduler_passes(Scheduler(later, settings))
        return report

    seconds, micros = r.time()
    base = EVERY_MS - (seconds * 1000 + micros // 1000) % EVERY_MS  # the offset to the next tick
    with caplog.at_level(logging.WARNING, logger="orchestrator.scheduler"):
        reports = [one_pass(base + EVERY_MS * k + 300) for k in range(5)]
    # the healthy schedule fired at every one of the five ticks, one task each
    info = {s.id: s for s in app.schedules()}[HEALTHY]
    assert info.fired == 5 and info.skipped == 0 and info.caught_up == 0, info
    assert [rep.schedule_tasks for rep in reports] == [1] * 5
    assert info.last_tick is not None
    for k in range(5):
        assert r.exists(keys.task(tick_task_id(HEALTHY, info.last_tick - EVERY_MS * k)))
    # each broken one set aside once (in the first pass), named in an event and a log line
    assert sorted(sid for _, sid in reports[0].schedules_set_aside) == broken
    assert all(rep.schedules_set_aside == [] for rep in reports[1:])
    events = [e for e in app.queue("default").events(1000) if e.event == "schedule_set_aside"]
    assert sorted(e.fields["schedule"] for e in events) == broken
    logged = caplog.text
    assert all(f"Schedule {sid} of queue default set aside" in logged for sid in broken)
    # nothing of theirs was changed, and nothing fired for them
    assert {sid: dump(r, keys.schedule(sid)) for sid in broken} == before
    assert r.zcard(keys.pending) == 5
    for sid in broken:
        assert r.zscore(keys.schedules, sid) > info.last_tick  # out of the due range, still in the index
    # looked at again after SET_ASIDE_MS: one fixed by declaring it again fires, the rest go aside again
    app.schedule(broken[0], "tests:add", every=EVERY_MS // 1000, args=[1, 2])  # bad JSON args rewritten
    again = one_pass(base + 4 * EVERY_MS + 300 + SET_ASIDE_MS)
    assert sorted(sid for _, sid in again.schedules_set_aside) == broken[1:]
    assert again.schedule_tasks == 2  # the healthy one and the fixed one


def test_orch_doctor_names_the_schedules_that_do_not_read(app: Orchestrator, r: redis.Redis):
    from orchestrator.health import Status
    from orchestrator.integrity import broken_schedules, integrity_checks

    keys = app.keys("default")
    app.schedule("fine", "tests:add", every=60)
    assert broken_schedules(r, "orch") == []
    assert "schedules" not in {c.name for c in integrity_checks(r, "orch")}
    spoilers = _spoilers(r, keys.schedule)
    for spoil in spoilers:
        app.schedule(spoil.__name__, "tests:add", every=60)
        spoil(spoil.__name__)
    found = {sid: why for _, sid, why in broken_schedules(r, "orch")}
    assert set(found) == {s.__name__ for s in spoilers}, found
    assert "args" in found["bad_json"] and "task" in found["missing_field"] and "not a hash" in found["not_a_hash"]
    [check] = [c for c in integrity_checks(r, "orch") if c.name == "schedules"]
    assert check.status is Status.WARN and "and 2 more" in check.detail and "fine" not in check.detail
    assert "bad_json" in check.detail  # by id: the first five named
