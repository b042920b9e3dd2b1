"""Workers and schedulers facing hostile Redis data: they log it safely, skip it and go on.

Real ``orch`` processes (tests.integration.procs) on the private redis-server; the bad
data is written with plain Redis commands, as anyone holding the producer's ACL user could.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from orchestrator import Orchestrator, TaskState
from orchestrator.client import REREGISTER_S
from orchestrator.integrity import repair
from orchestrator.keys import QueueKeys, queues_key
from tests.integration.procs import SAMPLE_APP, Procs, wait_for
from tests.redis_server import RedisServer

FORGED = "2026-12-03 10:00:00,000 [Monitor] Worker w9 unresponsive (forged)"


@pytest.fixture
def procs(app: Orchestrator, redis_server: RedisServer, tmp_path: Path) -> Iterator[Procs]:
    with Procs(redis_server.url, tmp_path) as started:
        yield started


def forged_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if line.startswith(FORGED[:20]) or line.startswith("[Monitor]")]


def test_names_and_ids_from_redis_cannot_forge_log_lines(procs: Procs, app: Orchestrator, r: redis.Redis) -> None:
    keys = QueueKeys("default")
    handle = app.enqueue("tests:add", [1, 2])
    r.hset(keys.task(handle.id), "name", f"tests:add\n{FORGED}\x1b[2K")
    r.zadd(keys.workers, {f"w9\n{FORGED}".encode() + b"\xff": 1})  # a dead worker with a hostile id
    r.zadd(keys.running, {b"t\xff\xfe": 1})  # an expired lease of a task id that is not UTF-8
    worker = procs.start("w1", ["worker", "-v", "--name", "w1", "--app", SAMPLE_APP, "--heartbeat-interval", "0.1"])
    scheduler = procs.scheduler()
    wait_for(lambda: handle.status().is_final, "the task to end", 20, alive=[worker, scheduler])
    assert handle.status() is TaskState.FAILED  # no function under that name
    wait_for(lambda: r.zcard(keys.workers) == 1, "the hostile worker id to be reaped", 20, alive=[worker, scheduler])
    wait_for(lambda: "unresponsive" in scheduler.log(), "the scheduler's [Monitor] line", 20, alive=[scheduler])
    for proc in (worker, scheduler):
        log = proc.log()
        assert forged_lines(log) == [], log
        assert "\x1b" not in log and "\\n2026-12-03" in log
    assert "w9\\n2026-12-03" in scheduler.log() and "\\xff" in scheduler.log()
    wait_for(lambda: r.zcard(keys.running) == 0, "the non-UTF-8 id to leave running", 20, alive=[scheduler])


# ------------------------------------------------------------- the known-queues set


def test_enqueue_registers_its_queue_again_after_the_set_is_deleted(app: Orchestrator, r: redis.Redis) -> None:
    """A producer adds its queue again, riding on an enqueue, at most REREGISTER_S after the
    set lost it: each way of enqueueing, sync and asyncio, until the set holds it again."""
    app.enqueue("tests:add", [1, 2], queue="q1")
    assert r.smembers(queues_key()) == {b"q1"}

    def registered_again(enqueue: Callable[[], object], queue: bytes) -> None:
        r.delete(queues_key())
        wait_for(lambda: enqueue() and queue in r.smembers(queues_key()), "the queue registered again",
                 5 * REREGISTER_S, interval=0.05)

    registered_again(lambda: app.enqueue("tests:add", [1, 2], queue="q1"), b"q1")
    registered_again(lambda: app.enqueue_many([app.request("tests:add", [1, 2], queue="q1")]), b"q1")

    async def from_asyncio() -> None:
        for queue, many in (("q2", False), ("q3", True)):
            r.delete(queues_key())
            deadline = time.monotonic() + 5 * REREGISTER_S
            while queue.encode() not in r.smembers(queues_key()):
                assert time.monotonic() < deadline, f"{queue} not registered again"
                if many:
                    await app.aenqueue_many([app.request("tests:add", [1, 2], queue=queue)])
                else:
                    await app.aenqueue("tests:add", [1, 2], queue=queue)
                await asyncio.sleep(0.05)
        await app.aclose()

    asyncio.run(from_asyncio())


def test_the_known_queues_set_costs_the_enqueue_path_nothing_in_between(app: Orchestrator, r: redis.Redis) -> None:
    before = int(r.info("commandstats").get("cmdstat_sadd", {}).get("calls", 0))
    for _ in range(50):
        app.enqueue("tests:add", [1, 2], queue="q1")
    sent = int(r.info("commandstats")["cmdstat_sadd"]["calls"]) - before
    assert 1 <= sent < 50  # sent with the first enqueue, then at most once per REREGISTER_S


def test_an_enqueue_lands_when_the_known_queues_set_is_spoiled(app: Orchestrator, r: redis.Redis) -> None:
    r.set(queues_key(), "not a set")
    handle = app.enqueue("tests:add", [1, 2])
    assert handle.status() is TaskState.PENDING
    assert app.enqueue_many([app.request("tests:add", [3, 4])])[0].status() is TaskState.PENDING


def test_scheduler_promotes_a_queue_registered_after_the_set_was_deleted(
    procs: Procs, app: Orchestrator, r: redis.Redis
) -> None:
    app.enqueue("tests:add", [1, 2], queue="q1")
    r.delete(queues_key())
    later = app.enqueue("tests:add", [1, 2], queue="q1", delay=0.2)
    scheduler = procs.scheduler(queues=())  # every known queue
    wait_for(lambda: later.status() is TaskState.PENDING, "the delayed task to be promoted", 20, alive=[scheduler])


def test_bad_known_queue_names_are_skipped_and_reported_once(procs: Procs, app: Orchestrator, r: redis.Redis) -> None:
    r.sadd(queues_key(), "bad name!", b"\xff\xfe", "x" * 65)
    handles = [app.enqueue("tests:add", [1, 2], queue=q, delay=0.1) for q in ("default", "zz")]
    scheduler = procs.scheduler(queues=())
    for handle in handles:
        wait_for(lambda h=handle: h.status() is TaskState.PENDING, "promotion", 20, alive=[scheduler])  # type: ignore[misc]
    passes_before = scheduler.log().count("invalid queue name")
    time.sleep(0.3)  # several passes (50 ms interval) later, still one report: once per interval
    log = scheduler.log()
    assert scheduler.returncode is None
    assert passes_before >= 1 and log.count("[Scheduler] orch:queues:") == 1, log
    assert "'bad name!'" in log and "\\xff\\xfe" in log


# ------------------------------------------------------- a queue with a broken key


def test_a_queue_with_broken_keys_does_not_stop_the_others(procs: Procs, app: Orchestrator, r: redis.Redis) -> None:
    broken = QueueKeys("aaa")  # served first: strict order, and first in sorted order
    app.enqueue("tests:add", [1, 2], queue="aaa", delay=0.05)
    for key in (broken.pending, broken.scheduled, broken.running, broken.wake):
        r.delete(key)
        r.set(key, "spoiled")
    # Its heartbeat on aaa is refused (CORRUPT, nothing written): it registers on default only.
    worker = procs.worker("w1", queues=("aaa", "default"), ready=False)
    wait_for(lambda: procs.registered("w1"), "w1 to register on default", 20, alive=[worker])
    scheduler = procs.scheduler(queues=())
    now = app.enqueue("tests:add", [1, 2])
    later = app.enqueue("tests:add", [3, 4], delay=0.2)
    for handle in (now, later):
        wait_for(lambda h=handle: h.status() is TaskState.SUCCESS, "the good queue's task", 20,  # type: ignore[misc]
                 alive=[worker, scheduler])
    assert worker.returncode is None and scheduler.returncode is None
    for proc in (worker, scheduler):
        log = proc.log()
        # Named once: scripts refuse a spoiled key with CORRUPT (CorruptQueue); a plain command meets WRONGTYPE.
        assert log.count("queue aaa:") == 1 and ("CorruptQueue" in log or "WRONGTYPE" in log), log
        assert "Traceback" not in log


def test_a_key_spoiled_under_a_running_task_costs_that_task_an_attempt_only(
    procs: Procs, app: Orchestrator, r: redis.Redis
) -> None:
    spoiled = QueueKeys("aaa")
    worker = procs.worker("w1", queues=("aaa", "default"))
    scheduler = procs.scheduler(queues=())
    slow = app.enqueue("tests:sleep", [0.5], queue="aaa", max_retries=3)
    wait_for(lambda: slow.status() is TaskState.RUNNING, "the task to start", 20, alive=[worker])
    r.delete(spoiled.running)
    r.set(spoiled.running, "spoiled")  # its outcome will be refused (CORRUPT)
    wait_for(lambda: "queue aaa:" in worker.log(), "the worker to report the queue", 20, alive=[worker])
    other = app.enqueue("tests:add", [1, 2])
    wait_for(lambda: other.status() is TaskState.SUCCESS, "the other queue's task", 20, alive=[worker, scheduler])
    repair(r, "orch", events_maxlen=app.settings.events_maxlen)  # running rebuilt; the lease is expired
    wait_for(lambda: slow.status() is TaskState.SUCCESS, "the task to run again", 30, alive=[worker, scheduler])
    assert slow.info().attempts in (1, 2)  # 1: the worker's retried outcome landed before the reaper
    worker.terminate()  # a refused outcome must not leave a failed asyncio task behind (reported at exit)
    assert worker.wait_exit(20) == 0
    assert "Traceback" not in worker.log() and "never retrieved" not in worker.log(), worker.tail()
