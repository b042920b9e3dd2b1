"""Progress from every pool, and results that come as soon as a task ends.

An in-process worker (thread, asyncio, process pool; async functions on the loop) runs the
tasks of ``tests.integration.progress_tasks``: each report lands on the record (the last
one is ``handle.progress()``) and in the event stream; a refused report raises in the task
itself, a process-pool child's included (its report goes through its worker). Then
``result()``/``aresult()``: woken by the task's channel, not by polling.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from orchestrator import (
    Orchestrator,
    Progress,
    ResultTimeout,
    Settings,
    TaskFailed,
    TaskHandle,
    TaskState,
    WorkerSettings,
    listeners,
)
from orchestrator.keys import QueueKeys
from orchestrator.script_calls import arun, run
from orchestrator.worker.worker import Worker
from tests.integration import progress_tasks
from tests.redis_server import RedisServer

S = TaskState


class Running:
    """A Worker on its own event loop in a thread of the test process."""

    def __init__(self, redis_url: str, pool: str) -> None:
        app = Orchestrator(settings=Settings(redis_url=redis_url))
        settings = WorkerSettings(name=f"progress-{pool}", pool=pool, concurrency=1, grace=0, idle_wait=0.05,
                                  apps=("tests.integration.progress_tasks",))
        self.worker = Worker(app, settings, dict(progress_tasks.app.registry))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self.worker.run(),), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.worker.stop)
        self.thread.join(15)
        assert not self.thread.is_alive(), "the worker did not stop"
        self.loop.close()


@pytest.fixture(params=["thread", "asyncio", "process"])
def worker(
    request: pytest.FixtureRequest, redis_server: RedisServer, app: Orchestrator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Running]:
    monkeypatch.setenv("ORCH_REDIS_URL", redis_server.url)  # a process-pool child's own client (refusals)
    running = Running(redis_server.url, request.param)
    yield running
    running.stop()


def progress_events(r: redis.Redis, task_id: str) -> list[tuple[str, str]]:
    return [(f[b"fraction"].decode(), f[b"data"].decode()) for _, f in r.xrange(QueueKeys("default").events)
            if f.get(b"event") == b"progress" and f[b"task"] == task_id.encode()]


def test_every_pool_reports_progress(worker: Running, app: Orchestrator, r: redis.Redis) -> None:
    handle = app.enqueue("progress:steps", [4])
    assert handle.progress() is None
    assert handle.result(timeout=20) == "done"
    last = handle.progress()
    assert last is not None and (last.fraction, last.data) == (1.0, {"step": 4, "of": 4})
    assert handle.info().progress == last
    assert progress_events(r, handle.id) == [(repr(i / 4), f'{{"step":{i},"of":4}}') for i in range(1, 5)]
    if worker.worker.settings.pool == "thread":
        coroutine = app.enqueue("progress:asteps", [2])
        assert coroutine.result(timeout=20) == "done"
        assert coroutine.progress() == Progress(1.0, "sync call from a coroutine", coroutine.progress().at_ms)
        assert [f for f, _ in progress_events(r, coroutine.id)] == ["0.5", "1.0", "1.0"]


def test_a_refused_report_raises_in_the_task(worker: Running, app: Orchestrator, r: redis.Redis) -> None:
    handle = app.enqueue("progress:refusals")
    deadline = time.monotonic() + 20
    while r.llen("test:refusals") < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    seen = [x.decode() for x in r.lrange("test:refusals", 0, -1)]
    assert seen == ["ValidationError fraction", f"LeaseLost LEASE_LOST {handle.id}"]
    assert handle.progress() is None  # neither wrote anything


# ------------------------------------------------------------------ prompt results


def finish_later(
    app: Orchestrator, task_id: str, after: float, how: str = "complete", queue: str = "default"
) -> threading.Thread:
    """Claim the task, report half of it done, and end it ``after`` seconds later, from
    another thread, through the scripts."""
    scripts = app._scripts(queue)
    [lease] = run(app.redis, scripts.claim("w1", 1, 60_000))
    assert lease.task_id == task_id
    run(app.redis, scripts.progress(task_id, lease.token, "0.5", b"null", max_bytes=100))

    def end() -> None:
        time.sleep(after)
        if how == "complete":
            run(app.redis, scripts.complete(task_id, lease.token, b'"ok"', 0))
        elif how == "fail":
            run(app.redis, scripts.fail(task_id, lease.token, b'{"type":"E","message":"no","traceback":""}',
                                        mode="fatal"))
        else:  # the record changes without a notice (as if the message were lost)
            app.redis.hset(QueueKeys(queue).task(task_id), mapping={"state": "SUCCESS", "result": '"ok"'})

    thread = threading.Thread(target=end)
    thread.start()
    return thread


@pytest.fixture
def no_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the notice can wake a waiter within the test's time."""
    monkeypatch.setattr(TaskHandle, "FALLBACK_POLL", 30.0)


def test_result_wakes_on_the_notice(app: Orchestrator, no_fallback: None) -> None:
    handle = app.enqueue("progress:steps", [1])
    thread = finish_later(app, handle.id, 0.2)
    started = time.monotonic()
    assert handle.result(timeout=10) == "ok"
    assert time.monotonic() - started < 1.5
    thread.join()
    failing = app.enqueue("progress:steps", [1])
    thread = finish_later(app, failing.id, 0.1, "fail")
    with pytest.raises(TaskFailed, match="no"):
        failing.result(timeout=10)
    thread.join()


def test_aresult_wakes_on_the_notice(app: Orchestrator, no_fallback: None) -> None:
    handle = app.enqueue("progress:steps", [1])
    thread = finish_later(app, handle.id, 0.2)

    async def wait() -> tuple[object, float]:
        started = time.monotonic()
        try:
            return await handle.aresult(timeout=10), time.monotonic() - started
        finally:
            await app.aclose()

    value, took = asyncio.run(wait())
    assert value == "ok" and took < 1.5
    thread.join()


def test_a_lost_notice_is_made_up_for_by_the_slow_look(app: Orchestrator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TaskHandle, "FALLBACK_POLL", 0.1)
    handle = app.enqueue("progress:steps", [1])
    thread = finish_later(app, handle.id, 0.2, "silently")
    assert handle.result(timeout=5) == "ok"
    thread.join()


def test_without_the_channel_result_polls(app: Orchestrator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TaskHandle, "_listen", lambda self: None)  # as for an ACL user without channel rights
    handle = app.enqueue("progress:steps", [1])
    thread = finish_later(app, handle.id, 0.2, "silently")
    assert handle.result(timeout=5) == "ok"
    thread.join()
    with pytest.raises(ResultTimeout):
        app.enqueue("progress:steps", [1]).result(timeout=0.05)


def test_one_pub_sub_connection_serves_waits_one_after_another(app: Orchestrator, no_fallback: None) -> None:
    """A wait leaves its connection for the next (connecting costs Redis more than the
    wait); what the last wait left behind (its unsubscribe, a late message) wakes nobody."""
    first = app.enqueue("progress:steps", [1])
    thread = finish_later(app, first.id, 0.05)
    assert first.result(timeout=10) == "ok"
    thread.join()
    [kept] = listeners._idle[app.redis]
    app.redis.spublish(app.keys("default").finished(first.id), "SUCCESS")  # late: nobody listens to it now
    second = app.enqueue("progress:steps", [1])
    thread = finish_later(app, second.id, 0.3)
    started = time.monotonic()
    assert second.result(timeout=10) == "ok"
    assert 0.25 < time.monotonic() - started < 1.5  # woken by its own task's end, not by the stray message
    thread.join()
    assert listeners._idle[app.redis] == [kept]
    channels = [app.keys("default").finished(h.id) for h in (first, second)]
    deadline = time.monotonic() + 5
    while app.redis.execute_command("PUBSUB", "SHARDNUMSUB", *channels)[1::2] != [0, 0]:  # idle: unsubscribed
        assert time.monotonic() < deadline, "the idle connection is still subscribed"
        time.sleep(0.01)


def test_asyncio_waits_one_after_another_open_no_connection(app: Orchestrator, r: redis.Redis) -> None:
    """200 aresult() in a row, half woken by their task's end and half timed out, reuse the
    connections of the first few: Redis accepts no new connection meanwhile (INFO
    total_connections_received) and CLIENT LIST holds the same clients."""
    scripts = app._scripts("default")

    async def wait_once(n: int) -> None:
        if n % 2:  # (in another queue: never claimed below)
            with pytest.raises(ResultTimeout):
                await (await app.aenqueue("progress:steps", [n], queue="idle")).aresult(timeout=0.005)
            return
        handle = await app.aenqueue("progress:steps", [n])
        [lease] = await arun(app.aredis, scripts.claim("w1", 1, 60_000))
        waiter = asyncio.ensure_future(handle.aresult(timeout=10))
        await asyncio.sleep(0.001)
        await arun(app.aredis, scripts.complete(handle.id, lease.token, b'"ok"', 0))
        assert await waiter == "ok"

    def clients() -> tuple[int, list[str]]:
        return int(r.info("stats")["total_connections_received"]), sorted(c["id"] for c in r.client_list())

    async def scenario() -> tuple[tuple[int, list[str]], tuple[int, list[str]], int]:
        try:
            for n in range(10):  # the pool's connections and the pub/sub one, made
                await wait_once(n)
            before = clients()
            for n in range(200):
                await wait_once(n)
            return before, clients(), len(listeners._aidle[app.aredis])
        finally:
            await app.aclose()

    before, after, idle = asyncio.run(scenario())
    assert after == before, "an asyncio wait opened a connection"
    assert idle == 1  # one pub/sub connection served them all
