"""A waiter's pub/sub connection goes with the wait, however the wait ends.

``result()``/``aresult()`` subscribe to the task's shard channel before marking the record
(watch.lua); a wait that ends between the two (the caller cancels it, as a web client that
leaves does, or the mark raises: the task was deleted meanwhile) must close that
connection too. Otherwise the asyncio one stays checked out of the client's pool and
subscribed on the server for as long as the app lives. Each test counts the channel's
subscribers on the server (PUBSUB SHARDNUMSUB). And a mark Redis refuses for want of
memory (maxmemory, noeviction) makes the wait poll, as a mark the ACL refuses does: waiting
writes nothing the caller asked for.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from orchestrator import Orchestrator, TaskHandle, TaskNotFound, listeners
from orchestrator.keys import QueueKeys
from orchestrator.script_calls import run


def subscribers(r: redis.Redis, task_id: str) -> int:
    channel = QueueKeys("default").finished(task_id)
    [(_, count)] = r.pubsub_shardnumsub(channel)
    return int(count)


async def gone_within(r: redis.Redis, task_id: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if subscribers(r, task_id) == 0:
            return True
        await asyncio.sleep(0.02)
    return subscribers(r, task_id) == 0


def stuck_marking(monkeypatch: pytest.MonkeyPatch, stuck: asyncio.Event) -> None:
    """The wait stops at watch.lua's round trip, which the caller gives up on."""

    async def stuck_watch(self: TaskHandle[Any]) -> None:
        stuck.set()
        await asyncio.Event().wait()

    monkeypatch.setattr(TaskHandle, "_awatch", stuck_watch)


def stuck_subscribing(monkeypatch: pytest.MonkeyPatch, stuck: asyncio.Event) -> None:
    """The wait stops before reading its subscription's confirmation (sent, not read yet)."""
    real_next = listeners.next_message

    async def stuck_confirmation(listener: Any, timeout: float) -> Any:
        if not stuck.is_set():
            stuck.set()
            await asyncio.Event().wait()
        return await real_next(listener, timeout)

    monkeypatch.setattr(listeners, "next_message", stuck_confirmation)


@pytest.mark.parametrize("stick", [stuck_marking, stuck_subscribing], ids=["marking", "subscribing"])
def test_a_cancelled_wait_unsubscribes(
    app: Orchestrator, r: redis.Redis, monkeypatch: pytest.MonkeyPatch, stick: Callable[..., None]
) -> None:
    handle = app.enqueue("progress:steps", [1])

    async def scenario() -> bool:
        stuck = asyncio.Event()
        stick(monkeypatch, stuck)
        try:
            waiter = asyncio.create_task(handle.aresult(timeout=30))
            await asyncio.wait_for(stuck.wait(), 5)
            deadline = time.monotonic() + 3  # (a subscription sent but not yet read may not count yet)
            while subscribers(r, handle.id) == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert subscribers(r, handle.id) == 1
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            return await gone_within(r, handle.id, 3)
        finally:
            await app.aclose()

    assert asyncio.run(scenario()), "the cancelled wait's pub/sub connection is still subscribed"


def test_a_task_deleted_before_the_mark_leaves_no_subscription(
    app: Orchestrator, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = app.enqueue("progress:steps", [1])

    def deleted_meanwhile(self: TaskHandle[Any]) -> None:
        assert subscribers(r, self.id) == 1  # subscribed first
        raise TaskNotFound(f"no task {self.id}", task_id=self.id, queue=self.queue)

    monkeypatch.setattr(TaskHandle, "_watch", deleted_meanwhile)
    with pytest.raises(TaskNotFound) as raised:
        handle.result(timeout=30)
    assert raised.value.task_id == handle.id  # (the traceback, held here, keeps result()'s frame)
    # (a connection kept for the next wait unsubscribes without waiting for the answer: listeners.release)
    assert asyncio.run(gone_within(r, handle.id, 3)), "the wait's pub/sub connection is still subscribed"


def test_a_mark_refused_for_want_of_memory_makes_result_poll(app: Orchestrator, r: redis.Redis) -> None:
    handle = app.enqueue("progress:steps", [1])
    scripts = app._scripts("default")
    [lease] = run(app.redis, scripts.claim("w1", 1, 60_000))

    def end() -> None:  # memory freed, then the task completes
        time.sleep(0.3)
        r.config_set("maxmemory", 0)
        run(app.redis, scripts.complete(handle.id, lease.token, b'"ok"', 0))

    r.config_set("maxmemory", 1)  # (noeviction, the default: watch.lua's HSET is refused)
    thread = threading.Thread(target=end)
    try:
        thread.start()
        assert handle.result(timeout=10) == "ok"
    finally:
        thread.join()
        r.config_set("maxmemory", 0)
