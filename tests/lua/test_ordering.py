"""Claim order and claim exclusivity at scale, on a real redis-server."""

from __future__ import annotations

import random
import threading
from collections import Counter

import pytest

from orchestrator import Orchestrator, Settings
from orchestrator.connection import sync_client
from orchestrator.script_calls import run


@pytest.mark.fakeredis_slow  # 30 s there; the order at small scale runs on it in the quick loop (below)
def test_priority_then_fifo_across_10000_tasks(app, r):
    rng = random.Random(7)
    priorities = [rng.randrange(10) for _ in range(10_000)]
    handles = app.enqueue_many(
        app.request("tests.jobs:job", [i], priority=p) for i, p in enumerate(priorities)
    )
    assert len({h.id for h in handles}) == 10_000
    t = app._scripts("default")
    claimed = []
    while batch := run(r, t.claim("w1", 733, 60_000)):
        assert len(batch) <= 733
        claimed += batch
    expected = sorted(range(10_000), key=lambda i: (priorities[i], i))
    assert [lease.args[0] for lease in claimed] == expected
    assert [lease.task_id for lease in claimed] == [handles[i].id for i in expected]
    assert [lease.priority for lease in claimed] == sorted(priorities)
    assert r.zcard(app.keys("default").pending) == 0
    assert r.zcard(app.keys("default").running) == 10_000


def test_fifo_holds_across_separate_enqueue_calls(app, r):
    order = []
    for i in range(30):
        priority = i % 3
        order.append((priority, i, app.enqueue("tests.jobs:job", [i], priority=priority).id))
    leases = run(r, app._scripts("default").claim("w1", 100, 60_000))
    assert [lease.task_id for lease in leases] == [task_id for _, _, task_id in sorted(order)]


@pytest.mark.fakeredis_slow  # 10 s there (5,000 tasks); claims from several clients: the last test
def test_concurrent_claimers_never_share_or_skip_a_task(app, backend):
    total, claimers, batch = 5000, 8, 17
    handles = app.enqueue_many(app.request("tests.jobs:job", [i]) for i in range(total))
    t = app._scripts("default")
    barrier = threading.Barrier(claimers)
    results: list[list] = [[] for _ in range(claimers)]
    errors: list[BaseException] = []

    def claimer(n: int) -> None:
        client = sync_client(backend.url)
        try:
            barrier.wait(timeout=10)
            while leases := run(client, t.claim(f"w{n}", batch, 60_000)):
                results[n] += leases
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(claimers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []

    counts = Counter(lease.task_id for leases in results for lease in leases)
    assert [task_id for task_id, n in counts.items() if n > 1] == []
    assert set(counts) == {h.id for h in handles}
    assert sum(1 for leases in results if leases) > 1  # the claimers really interleaved
    tokens = [int(lease.token) for leases in results for lease in leases]
    assert len(set(tokens)) == total
    for n, leases in enumerate(results):
        # Each claimer sees its own claims in queue order, with growing tokens.
        assert [lease.args[0] for lease in leases] == sorted(lease.args[0] for lease in leases)
        assert [int(lease.token) for lease in leases] == sorted(int(lease.token) for lease in leases)
        for lease in leases:
            assert app.redis.hget(app.keys("default").task(lease.task_id), "worker") == f"w{n}".encode()


def test_claimers_on_separate_orchestrators_share_one_queue(backend, r):
    apps = [Orchestrator(settings=Settings(redis_url=backend.url)) for _ in range(3)]
    try:
        apps[0].enqueue_many(apps[0].request("tests.jobs:job", [i]) for i in range(30))
        seen = []
        for i in range(10):
            for n, app in enumerate(apps):
                seen += [lease.args[0] for lease in run(app.redis, app._scripts("default").claim(f"w{n}", 1, 60_000))]
            assert len(seen) == 3 * (i + 1)
        assert seen == list(range(30))
    finally:
        for app in apps:
            app.close()
