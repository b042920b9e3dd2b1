"""The scheduler's load samples and roll-ups, ``Queue.rollups`` and ``app.overview()``.

Two schedulers sample each minute once and roll each quarter up once (the clock shifted
with ``clock_offset_ms``, so a quarter is complete at once); the operator reads them back;
the overview reads every queue in a bounded number of round trips, counted by wrapping
redis-py's command and pipeline paths (no MONITOR).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis

from orchestrator import Orchestrator, SchedulerSettings, Settings
from orchestrator.errors import ValidationError
from orchestrator.metrics_records import MINUTE_MS, QUARTER_MS
from orchestrator.redis_local import LocalRedis
from orchestrator.scheduler import Scheduler
from orchestrator.script_calls import run
from tests.integration.passes import scheduler_passes

QUARTER = timedelta(milliseconds=QUARTER_MS)


def server_ms(r: redis.Redis) -> int:
    seconds, micros = r.time()  # type: ignore[misc]
    return int(seconds) * 1000 + int(micros) // 1000


@pytest.fixture
def past(r: redis.Redis, redis_server: LocalRedis) -> Iterator[Orchestrator]:
    """An app whose scripts run 5 minutes into the previous quarter hour (complete by the real clock)."""
    now = server_ms(r)
    offset = now - now % QUARTER_MS - QUARTER_MS + 5 * MINUTE_MS + 1_000 - now
    orch = Orchestrator(settings=Settings(redis_url=redis_server.url), clock_offset_ms=offset)
    yield orch
    orch.close()


def settings() -> SchedulerSettings:
    return SchedulerSettings(queues=("q",), interval=0.01)


def test_two_schedulers_sample_a_minute_once_and_roll_a_quarter_up_once(
    app: Orchestrator, past: Orchestrator, r: redis.Redis
) -> None:
    for _ in range(3):
        past.enqueue("m:f", queue="q")
    run(r, past._scripts("q").heartbeat("w1", 3_600_000, {"running": 3, "concurrency": 4}, ()))
    first, second = Scheduler(past, settings()), Scheduler(past, settings())
    reports = scheduler_passes(first, second)
    assert [rep.sampled for rep in reports] == [["q"], []]
    assert first.rollup_due["q"] > time.monotonic()  # its next call waits for the next minute
    assert scheduler_passes(first)[0].sampled == []  # not even called again this minute
    points = [p for p in app.queue("q").series(minutes=40) if p.load is not None]
    assert [(p.load, p.workers, p.enqueued) for p in points] == [(0.75, 1, 3)]

    now_a, now_b = Scheduler(app, settings()), Scheduler(app, settings())
    reports = scheduler_passes(now_a, now_b)
    assert reports[0].rolled >= 1 and reports[1].rolled == 0
    last = app.queue("q").rollups(hours=1)[-1]
    assert (last.enqueued, last.load, last.load_max, last.workers, last.samples) == (3, 0.75, 0.75, 1, 1)
    assert r.pttl(app.keys("q").rollup(int(last.start.timestamp() * 1000))) > 6 * 24 * 3_600_000
    in_quarter = [p for p in app.queue("q").series(minutes=45) if last.start <= p.minute < last.start + QUARTER]
    assert sum(p.enqueued for p in in_quarter) == last.enqueued  # the series and the roll-up agree


def test_rollups_are_the_complete_quarters_oldest_first(app: Orchestrator) -> None:
    points = app.queue("q").rollups(hours=2)
    assert len(points) == 8
    starts = [int(p.start.timestamp() * 1000) for p in points]
    assert all(b - a == QUARTER_MS for a, b in itertools.pairwise(starts))
    assert starts[-1] + QUARTER_MS <= server_ms(app.redis) < starts[-1] + 2 * QUARTER_MS
    assert all(p.enqueued == 0 and p.load is None for p in points)
    for bad in (0, 169, True, "2"):
        with pytest.raises(ValidationError, match="hours"):
            app.queue("q").rollups(hours=bad)  # type: ignore[arg-type]


class RoundTrips:
    """Counts round trips: every write of commands to a Redis connection (redis-py's single
    commands and pipelines, and script_calls.run_many, all send through send_packed_command)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        send = redis.connection.Connection.send_packed_command

        def counted(conn: Any, *args: Any, **options: Any) -> Any:
            self.count += 1
            return send(conn, *args, **options)

        monkeypatch.setattr(redis.connection.Connection, "send_packed_command", counted)


@pytest.mark.parametrize("queues", [3, 30])
def test_the_overview_reads_every_queue_in_three_round_trips(
    app: Orchestrator, r: redis.Redis, monkeypatch: pytest.MonkeyPatch, queues: int
) -> None:
    names = [f"q{i:02d}" for i in range(queues)]
    for name in names:
        app.enqueue("m:f", queue=name)
    app.enqueue("m:f", queue="q00", delay=60)
    app.enqueue("m:f", queue="q01")
    [lease] = run(r, app._scripts("q01").claim("w1", 1, 60_000))
    run(r, app._scripts("q01").fail(lease.task_id, lease.token, b'{"type": "E", "message": "m"}', mode="fatal"))
    app.queue("q02").pause()
    run(r, app._scripts("q00").heartbeat("w1", 60_000, {"running": 1, "concurrency": 4}, ()))
    run(r, app._scripts("q00").heartbeat("w2", 60_000, {"running": 2, "concurrency": 4}, ()))
    run(r, app._scripts("q00").heartbeat("gone", 60_000, {"running": 4, "concurrency": 4}, ()))
    r.zadd(app.keys("q00").workers, {"gone": 1})  # its deadline long past: not live

    trips = RoundTrips(monkeypatch)
    overview = app.overview()
    assert trips.count == 3

    assert [o.queue for o in overview] == names
    by = {o.queue: o for o in overview}
    for o in overview:
        assert o.counts == app.queue(o.queue).counts()
    assert by["q00"].counts["scheduled"] == 1 and by["q01"].counts["failed"] == 1
    assert [o.queue for o in overview if o.paused] == ["q02"]
    assert (by["q00"].workers, by["q00"].load) == (2, 3 / 8)
    assert (by["q01"].workers, by["q01"].load) == (0, 0.0)  # w1's registration there was never a heartbeat


def test_the_overview_of_nothing_is_one_round_trip_and_a_spoiled_index_is_noted(
    app: Orchestrator, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    app.redis.ping()  # a new connection's set-up (HELLO, CLIENT SETINFO) is no round trip of the overview
    trips = RoundTrips(monkeypatch)
    assert app.overview() == []
    assert trips.count == 1
    app.enqueue("m:f", queue="q")
    r.delete(app.keys("q").failed)
    r.set(app.keys("q").failed, "x")
    [o] = app.overview()
    assert o.counts["failed"] == 0 and o.counts["pending"] == 1
    assert any("failed" in note for note in o.notes)
