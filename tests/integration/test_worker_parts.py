"""The worker's parts in-process, on the private redis-server: weighted queue order and the
pipeliner's batching do what their docstrings say.

``orch worker -q high:3 -q low:1`` claims from a weighted random order per claim; equal
weights mean strict order. The pipeliner sends calls made while a round trip is in
flight together in the next one, and a lone call in exactly one.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import pytest
import redis

from orchestrator import Orchestrator, Settings, TaskNotFound, WorkerSettings
from orchestrator.redis_local import free_port
from orchestrator.script_calls import Call
from orchestrator.transitions import Lease
from orchestrator.worker import pipeline
from orchestrator.worker.pipeline import Pipeliner
from orchestrator.worker.worker import Worker


def worker_on(app: Orchestrator, queues: Sequence[tuple[str, int]]) -> Worker:
    worker = Worker(app, WorkerSettings(queues=tuple(queues), concurrency=1, name="w1"), functions={})
    worker._pipeliner = Pipeliner(app.aredis)
    return worker


def fill(app: Orchestrator, queue: str, n: int) -> None:
    app.enqueue_many([app.request("tests:add", [i, 0], queue=queue) for i in range(n)])


def run_async(app: Orchestrator, body: Callable[[], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        try:
            return await body()
        finally:
            await app.aclose()

    return asyncio.run(main())


# ------------------------------------------------------------------ queue order


def test_equal_weights_claim_in_strict_order_and_fall_through_when_a_queue_is_empty(app: Orchestrator) -> None:
    fill(app, "high", 2)
    fill(app, "low", 5)
    worker = worker_on(app, [("high", 2), ("low", 2)])  # equal weights, whatever their value

    async def claims() -> list[list[str]]:
        return [[lease.queue for lease in await worker._claim(n)] for n in (1, 3, 2)]

    assert run_async(app, claims) == [["high"], ["high", "low", "low"], ["low", "low"]]


def test_weights_share_first_claims_in_proportion_and_starve_no_queue(app: Orchestrator) -> None:
    fill(app, "high", 400)
    fill(app, "low", 400)
    worker = worker_on(app, [("high", 3), ("low", 1)])
    random.seed(20261203)  # the order is drawn with the random module: the same draws every run

    async def claims() -> Counter[str]:
        firsts: Counter[str] = Counter()
        for _ in range(400):
            leases: list[Lease] = await worker._claim(1)
            firsts[leases[0].queue] += 1
        return firsts

    firsts = run_async(app, claims)
    assert sum(firsts.values()) == 400
    assert 0.68 < firsts["high"] / 400 < 0.82, firsts  # 3:1 is 75 % (a strict order would give 100 %)
    assert firsts["low"] > 0


def test_weighted_order_lists_every_queue_once() -> None:
    settings = WorkerSettings(queues=(("a", 5), ("b", 1), ("c", 1)), name="w1")
    worker = Worker(Orchestrator(settings=Settings()), settings, functions={})
    random.seed(3)
    orders = [worker._queue_order() for _ in range(300)]
    assert all(sorted(order) == ["a", "b", "c"] for order in orders)
    assert {order[0] for order in orders} == {"a", "b", "c"}
    assert Counter(order[0] for order in orders)["a"] > 150  # 5 of 7 ≈ 214


# --------------------------------------------------------------------- pipeliner


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The size of every round trip the pipeliner makes, seen at ``arun_many``."""
    sizes: list[int] = []
    real = pipeline.arun_many

    async def spy(client: Any, calls: Sequence[Call[Any]], wait: Any = None) -> list[Any]:
        sizes.append(len(calls))
        return await real(client, calls, wait)

    monkeypatch.setattr(pipeline, "arun_many", spy)
    yield sizes


def test_a_lone_call_is_one_round_trip_of_one(app: Orchestrator, batches: list[int]) -> None:
    fill(app, "default", 3)
    q = app._scripts("default")

    async def one_at_a_time() -> list[str]:
        p = Pipeliner(app.aredis)
        got = [(await p.call(q.claim("w", 1, 60_000)))[0].task_id for _ in range(3)]
        assert (p.round_trips, p.calls) == (3, 3)
        return got

    assert len(set(run_async(app, one_at_a_time))) == 3
    assert batches == [1, 1, 1]


@pytest.mark.parametrize("now", [False, True], ids=["call", "call_now"])
def test_calls_made_during_a_round_trip_go_together_in_the_next(
    app: Orchestrator, batches: list[int], monkeypatch: pytest.MonkeyPatch, now: bool
) -> None:
    """Calls made while a round trip is on the wire wait for it, then go together. With
    ``call_now`` (an idle worker's claim after a wake-up) the first round trip is made from
    the caller's own task, the next from the sender task, as for any round trip."""
    fill(app, "default", 10)
    q = app._scripts("default")
    spy = pipeline.arun_many
    hold = asyncio.Event
    senders: list[asyncio.Task[Any] | None] = []

    async def scenario() -> list[list[Lease]]:
        in_flight, release = hold(), hold()

        async def slow_first(client: Any, calls: Sequence[Call[Any]], wait: Any = None) -> list[Any]:
            senders.append(asyncio.current_task())
            if not in_flight.is_set():
                in_flight.set()
                await release.wait()  # the first round trip is on the wire until released
            return await spy(client, calls, wait)

        monkeypatch.setattr(pipeline, "arun_many", slow_first)
        p = Pipeliner(app.aredis)
        send = p.call_now if now else p.call
        first = asyncio.create_task(send(q.claim("w", 1, 60_000)))
        await in_flight.wait()
        rest = [asyncio.create_task(p.call(q.claim("w", 1, 60_000))) for _ in range(9)]
        await asyncio.sleep(0)
        release.set()
        got = await asyncio.gather(first, *rest)
        assert (senders[0] is first) == now, "call_now sent from its caller's own task"
        assert senders[1] not in (first, *rest)  # the others went through the sender task
        assert (p.round_trips, p.calls) == (2, 10)
        return got

    leases = run_async(app, scenario)
    assert batches == [1, 9]
    assert len({lease[0].task_id for lease in leases}) == 10, "each call got its own reply"


def test_call_now_joins_a_round_trip_about_to_go(app: Orchestrator, batches: list[int]) -> None:
    fill(app, "default", 2)
    q = app._scripts("default")

    async def both() -> tuple[list[Lease], list[Lease]]:
        p = Pipeliner(app.aredis)  # the outcome queued first (its sender not started yet): the claim joins it
        return await asyncio.gather(p.call(q.claim("w", 1, 60_000)), p.call_now(q.claim("w", 1, 60_000)))

    first, second = run_async(app, both)
    assert batches == [2]
    assert first[0].task_id != second[0].task_id


def test_an_idle_worker_wakes_for_an_enqueue_and_stops_at_once(app: Orchestrator) -> None:
    """The claim loop waits for work in its own task (no helper tasks): an enqueue wakes it,
    stop() ends the wait at once rather than at the end of the block (idle_wait 5 s)."""
    worker = Worker(app, WorkerSettings(concurrency=2, name="w1", idle_wait=5.0), functions={"tests:add": aadd})

    async def scenario() -> float:
        running = asyncio.create_task(worker.run())
        try:
            for expected in (1, 2):
                while worker._idle_in is None:  # blocked on the wake-up key
                    assert not running.done()
                    await asyncio.sleep(0.005)
                await app.aenqueue("tests:add", [expected, 0])
                deadline = time.monotonic() + 3
                while worker.processed < expected:
                    assert time.monotonic() < deadline, "the enqueue did not wake the idle worker"
                    await asyncio.sleep(0.005)
            while worker._idle_in is None:
                await asyncio.sleep(0.005)
        finally:
            stopped = time.monotonic()
            worker.stop()
            await running
        return time.monotonic() - stopped

    assert run_async(app, scenario) < 1.0
    assert worker.finished == 2


def test_a_refused_call_fails_alone_in_its_batch(app: Orchestrator, batches: list[int]) -> None:
    fill(app, "default", 2)
    q = app._scripts("default")

    async def mixed() -> list[Any]:
        p = Pipeliner(app.aredis)
        calls = [q.claim("w", 1, 60_000), q.cancel("no-such-task", 0), q.claim("w", 1, 60_000)]
        return await asyncio.gather(*(p.call(c) for c in calls), return_exceptions=True)

    first, refused, last = run_async(app, mixed)
    assert batches == [3]
    assert isinstance(refused, TaskNotFound)
    assert len(first) == len(last) == 1 and first[0].task_id != last[0].task_id


def test_a_failed_round_trip_fails_every_call_in_it(batches: list[int]) -> None:
    app = Orchestrator(settings=Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0"))  # nothing listens
    q = app._scripts("default")

    async def unreachable() -> list[Any]:
        p = Pipeliner(app.aredis)
        return await asyncio.gather(*(p.call(q.promote(10)) for _ in range(3)), return_exceptions=True)

    results = run_async(app, unreachable)
    assert batches == [3]
    assert all(isinstance(r, redis.ConnectionError) for r in results), results


def test_a_cancelled_caller_does_not_take_the_others_replies(app: Orchestrator, batches: list[int]) -> None:
    fill(app, "default", 3)
    q = app._scripts("default")

    async def cancel_one() -> list[Any]:
        p = Pipeliner(app.aredis)
        tasks = [asyncio.create_task(p.call(q.claim("w", 1, 60_000))) for _ in range(3)]
        await asyncio.sleep(0)  # all three calls are queued; the round trip has not started
        tasks[1].cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    first, cancelled, last = run_async(app, cancel_one)
    assert batches == [3], "the cancelled call was already queued: it is still sent"
    assert isinstance(cancelled, asyncio.CancelledError)
    assert len(first) == len(last) == 1 and first[0].task_id != last[0].task_id
    assert app.redis.zcard(app.keys("default").running) == 3  # its lease is the reaper's to expire


def add(a: int, b: int) -> int:
    return a + b


async def aadd(a: int, b: int) -> int:
    return a + b


@pytest.mark.parametrize("fn", [add, aadd])
def test_a_claim_goes_out_with_the_outcome_that_freed_its_slot(
    app: Orchestrator, batches: list[int], fn: Callable[..., Any]
) -> None:
    """A slot is free once its function returned: the claim that fills it goes in the same
    round trip as that task's complete, so with concurrency 1 n tasks cost n + 1 round trips
    (claim, then complete and claim together), not 2n + 1."""
    fill(app, "default", 5)
    worker = Worker(app, WorkerSettings(concurrency=1, name="w1"), functions={"tests:add": fn})

    async def drain() -> None:
        running = asyncio.create_task(worker.run())
        deadline = time.monotonic() + 10
        try:
            while worker.processed < 5:
                assert time.monotonic() < deadline and not running.done(), "the worker did not drain in time"
                await asyncio.sleep(0.005)
        finally:
            worker.stop()
            await running

    asyncio.run(drain())
    assert worker.finished == 5
    assert batches[:6] == [1, 2, 2, 2, 2, 2]  # the sixth claim finds the queue empty
    assert app.queue("default").counts()["success"] == 5
