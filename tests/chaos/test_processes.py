"""Chaos with real processes: kill -9, SIGSTOP, concurrent schedulers, a restarted Redis.

Each test starts `orch worker` / `orch scheduler` processes on a private redis-server,
breaks something, and checks from Redis that no task was lost and none ran twice:
the sample tasks record every attempt in ``test:attempts``, the scripts every transition
in the queue's event stream. Every wait has a deadline.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from orchestrator import Orchestrator, Settings, TaskHandle, TaskState
from orchestrator.redis_local import LocalRedis
from orchestrator.script_calls import run
from tests.integration.procs import Procs, wait_for

pytestmark = pytest.mark.slow  # real processes killed, frozen and restarted: seconds each


@pytest.fixture
def procs(app: Orchestrator, redis_server: LocalRedis, tmp_path: Path) -> Iterator[Procs]:
    with Procs(redis_server.url, tmp_path) as started:
        yield started


def ids(handles: list[TaskHandle]) -> list[str]:
    return [h.id for h in handles]


def runs(procs: Procs, task_id: str) -> list[int]:
    """The attempt numbers a task actually started with, in order."""
    return [a.attempt for a in procs.attempts(task_id) if a.event in ("run", "start")]


def test_kill9_worker_mid_task_another_worker_finishes_it(procs: Procs, app: Orchestrator) -> None:
    scheduler = procs.scheduler()
    w1 = procs.worker("w1", concurrency=2, lease=0.6)
    quick = [app.enqueue("tests:add", [i, i]) for i in range(4)]
    wait_for(lambda: procs.all_in(ids(quick), "SUCCESS"), "w1 to run the quick tasks", alive=[w1])

    slow = app.enqueue("tests:sleep", [1.0])
    first = wait_for(lambda: procs.attempts(slow.id), "w1 to start the slow task", alive=[w1])
    w1.kill9()
    w2 = procs.worker("w2", concurrency=2, lease=0.6)
    wait_for(lambda: procs.state(slow.id) == "SUCCESS", "w2 to finish the slow task", 15, alive=[w2, scheduler])

    info = slow.info()
    assert (info.attempts, info.worker, info.result) == (2, "w2", 1.0)
    seen = [(a.attempt, a.event, a.pid) for a in procs.attempts(slow.id)]
    assert seen == [(1, "start", w1.pid), (2, "start", w2.pid), (2, "end", w2.pid)]
    assert info.token != first[0].token
    for handle in quick:
        assert runs(procs, handle.id) == [1], "a finished task must not run again"
    assert [e["task"] for e in procs.events("reaped")] == [slow.id]
    assert [e["worker"] for e in procs.events("worker_lost")] == ["w1"]
    assert not procs.registered("w1")


def test_kill9_scheduler_mid_run_a_new_one_carries_on(procs: Procs, app: Orchestrator) -> None:
    worker = procs.worker("w1", concurrency=4)
    s1 = procs.scheduler("s1")
    delayed = app.enqueue_many([app.request("tests:add", [i, 0], delay=0.2 + i * 0.03) for i in range(40)])
    early = [app.enqueue("tests:fail_once", [f"early-{i}"]) for i in range(5)]
    wait_for(lambda: len(procs.events("promoted")) >= 10, "s1 to promote some tasks", alive=[s1, worker])
    s1.kill9()

    # With no scheduler, retrying tasks wait: the new scheduler must promote them.
    late = [app.enqueue("tests:fail_once", [f"late-{i}"]) for i in range(5)]
    wait_for(lambda: procs.all_in(ids(late), "RETRYING"), "the late tasks to wait for a retry", alive=[worker])
    s2 = procs.scheduler("s2")
    everything = ids(delayed + early + late)
    wait_for(lambda: procs.all_in(everything, "SUCCESS"), "every task to succeed", 20, alive=[s2, worker])

    promoted = Counter(e["task"] for e in procs.events("promoted"))
    assert promoted == Counter(everything), "each task promoted exactly once"
    for handle in delayed:
        assert runs(procs, handle.id) == [1]
    for handle in early + late:
        assert runs(procs, handle.id) == [1, 2]
        assert handle.info().attempts == 2


def test_two_schedulers_promote_and_reap_each_task_once(procs: Procs, app: Orchestrator) -> None:
    connected = len(procs.redis.client_list())
    schedulers = [procs.scheduler("s1", batch=5), procs.scheduler("s2", batch=5)]
    wait_for(lambda: len(procs.redis.client_list()) >= connected + 2, "both schedulers to connect", alive=schedulers)

    # Tasks claimed by a worker that dies at once: their leases expire over 0.3-0.7 s.
    ghost = app.enqueue_many([app.request("tests:add", [i, 1]) for i in range(100)])
    for lease_ms in (300, 400, 500, 600, 700):
        assert len(run(app.redis, app._scripts("default").claim("ghost", 20, lease_ms))) == 20
    delayed = app.enqueue_many([app.request("tests:add", [i, 2], delay=0.2 + (i % 50) * 0.02) for i in range(300)])
    worker = procs.worker("w1", concurrency=8)
    everything = ids(ghost + delayed)
    wait_for(lambda: procs.all_in(everything, "SUCCESS"), "every task to succeed", 40, alive=[*schedulers, worker])

    promoted = [(e["task"], e["from"]) for e in procs.events("promoted")]
    assert Counter(promoted) == Counter(
        [(t, "RETRYING") for t in ids(ghost)] + [(t, "SCHEDULED") for t in ids(delayed)]
    ), "each task promoted exactly once"
    assert Counter(e["task"] for e in procs.events("reaped")) == Counter(ids(ghost)), "each lease reaped once"
    for handle in ghost:
        assert runs(procs, handle.id) == [2]  # attempt 1 was the ghost's
    for handle in delayed:
        assert runs(procs, handle.id) == [1]
    stats = procs.redis.hgetall(procs.keys.stats)
    assert (int(stats[b"promoted"]), int(stats[b"reaped"]), int(stats[b"succeeded"])) == (400, 100, 400)


def test_frozen_worker_late_result_is_rejected(procs: Procs, app: Orchestrator) -> None:
    scheduler = procs.scheduler()
    w1 = procs.worker("w1", lease=0.5)
    task = app.enqueue("tests:sleep", [1.0])
    first = wait_for(lambda: procs.attempts(task.id), "w1 to start the task", alive=[w1])
    w1.freeze()
    w2 = procs.worker("w2", lease=0.5)
    wait_for(lambda: procs.state(task.id) == "SUCCESS", "w2 to run the reaped task", 15, alive=[w2, scheduler])
    done = procs.record(task.id)
    second = [a for a in procs.attempts(task.id) if a.attempt == 2]
    assert (done["worker"], done["attempts"]) == ("w2", "2")
    assert second and second[0].pid == w2.pid and done["token"] == second[0].token != first[0].token

    w1.thaw()
    wait_for(lambda: f"Lease of task {task.id} lost" in w1.log(), "w1 to find its lease lost", alive=[w1])
    assert procs.record(task.id) == done, "the frozen worker's late outcome must change nothing"
    assert task.result(timeout=1) == 1.0
    assert [e["task"] for e in procs.events("reaped")] == [task.id]
    assert Counter(e["event"] for e in procs.events() if e.get("task") == task.id)["succeeded"] == 1
    wait_for(lambda: procs.registered("w1"), "w1 to heartbeat again", alive=[w1])


def test_worker_rides_out_a_redis_restart(tmp_path: Path) -> None:
    # appendfsync always: an acknowledged write is on disk before its reply is sent. With
    # everysec, Redis postpones writing the AOF (up to 2 s) while a background fsync is
    # slow, so on a loaded machine a kill -9 lost `before` (TaskNotFound after the restart).
    server = LocalRedis(extra=("--appendfsync", "always")).start()
    app = Orchestrator(settings=Settings(redis_url=server.url))
    try:
        with Procs(server.url, tmp_path) as procs:
            worker = procs.worker("w1", concurrency=2, lease=1)
            before = app.enqueue("tests:add", [1, 1])
            assert before.result(timeout=10) == 2

            server.kill()
            outage = re.compile(r"Redis unavailable|Heartbeat failed")
            wait_for(lambda: outage.search(worker.log()), "the worker to notice Redis is gone", 20, alive=[worker])
            server.start()  # same port, same append-only file

            after = [app.enqueue("tests:add", [i, 10]) for i in range(5)]
            for i, handle in enumerate(after):
                assert handle.result(timeout=15) == i + 10
            assert before.status() is TaskState.SUCCESS, "the append-only file kept the earlier task"
            assert worker.returncode is None
            assert worker.log().count("Started:") == 1

            # Reconnected for good: heartbeats go on and nothing more fails.
            complaints = len(outage.findall(worker.log()))
            seen = int(procs.redis.hget(procs.keys.worker("w1"), "last_seen") or 0)
            wait_for(
                lambda: int(procs.redis.hget(procs.keys.worker("w1"), "last_seen") or 0) >= seen + 500,
                "five more heartbeats", alive=[worker],
            )
            assert len(outage.findall(worker.log())) == complaints, worker.tail()
    finally:
        app.close()
        server.stop()


BUSY_SCRIPT = """
local stop = tonumber(redis.call('TIME')[1]) + 2
while tonumber(redis.call('TIME')[1]) < stop do end
return 1
"""


def test_busy_redis_stops_neither_worker_nor_scheduler(tmp_path: Path) -> None:
    """A long script elsewhere makes Redis answer BUSY to everyone for a while: a transient
    refusal to ride out, not a reason to exit or to stop heartbeating."""
    server = LocalRedis(appendonly=False, extra=("--lua-time-limit", "50")).start()  # BUSY after 50 ms
    app = Orchestrator(settings=Settings(redis_url=server.url))
    try:
        with Procs(server.url, tmp_path) as procs:
            scheduler = procs.scheduler()
            worker = procs.worker("w1", lease=1, idle_wait=0.05)
            assert app.enqueue("tests:add", [1, 1]).result(timeout=10) == 2

            blocker = redis.Redis(port=server.port)
            try:
                blocker.eval(BUSY_SCRIPT, 0)  # 1-2 s of BUSY replies for every other client
            finally:
                blocker.close()

            seen = int(procs.redis.hget(procs.keys.worker("w1"), "last_seen") or 0)
            wait_for(
                lambda: int(procs.redis.hget(procs.keys.worker("w1"), "last_seen") or 0) >= seen + 300,
                "the worker to heartbeat again", alive=[worker, scheduler],
            )
            later = app.enqueue("tests:add", [2, 2], delay=0.1)  # needs the scheduler to promote it
            assert later.result(timeout=10) == 4
            assert worker.returncode is None and scheduler.returncode is None
            assert "BUSY" in worker.log() and "BUSY" in scheduler.log(), "both should have met BUSY"
    finally:
        app.close()
        server.stop()
