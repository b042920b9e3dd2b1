"""A Sentinel failover under load, on real processes: one primary, one replica, three
sentinels (``LocalSentinel``), an ``orch worker`` and an ``orch scheduler`` on the
``redis+sentinel://`` URL, and two producers in this process (durability fast and
replicated). The primary is killed -9; the sentinels promote the replica; everyone follows
it (new connections, scripts loaded again on NOSCRIPT: a promoted replica's script cache
is empty). A second worker is frozen (SIGSTOP) across the gap, so its leases, whose
heartbeats were lost, are reaped and their tasks run again. Every acknowledged task
succeeds: all of the replicated producer's, and all of the fast producer's but those
acknowledged in the last moment before the kill (the asynchronous-replication window,
counted and printed). The old primary comes back as a
replica of the new one, so replicated writes are confirmed again.

The measurements (printed, ``pytest -s``): kill to failover (the sentinels name the new
primary), to the first acknowledged enqueue, to the first task completed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from orchestrator import Orchestrator, OrchestratorError, Settings
from orchestrator.connection import sync_client
from orchestrator.local_sentinel import LocalSentinel
from tests.integration.procs import Procs, wait_for

APP = "tests.integration.failover_tasks"

LEASE = 0.6
NAP = 60.0  # seconds a first attempt sleeps: still running when the primary is killed
WINDOW_S = 1.0  # a fast enqueue acknowledged this close to the kill may be lost (asynchronous replication)


@dataclass
class Producer:
    """Enqueues ``failover:add`` with a key per task until stopped; retries a failed enqueue
    with the same key (so a task is never enqueued twice), recording when each was acknowledged."""

    app: Orchestrator
    name: str
    acked: dict[str, float] = field(default_factory=dict)  # task id -> monotonic time acknowledged
    sent: dict[str, float] = field(default_factory=dict)  # task id -> when its (last) enqueue was sent
    failures: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            sent = time.monotonic()
            try:
                handle = self.app.enqueue("failover:add", args=[i, 1], key=f"{self.name}-{i}")
            except (OrchestratorError, ConnectionError, OSError):  # failing over, or not replicated: again
                self.failures += 1
                time.sleep(0.02)
                continue
            self.acked[handle.id] = time.monotonic()
            self.sent[handle.id] = sent
            i += 1
            time.sleep(0.01)

    def first_after(self, moment: float) -> float | None:
        """Seconds from ``moment`` to the first acknowledgement of an enqueue sent after it."""
        later = [t for i, t in list(self.acked.items()) if self.sent.get(i, 0.0) > moment]
        return min(later) - moment if later else None


@pytest.fixture
def sentinel() -> Iterator[LocalSentinel]:
    with LocalSentinel() as s:
        yield s


def test_workers_schedulers_and_producers_follow_a_failover(sentinel: LocalSentinel, tmp_path: Path) -> None:
    durable = {"ORCH_DURABILITY": "replicated", "ORCH_REPLICA_TIMEOUT": "0.5"}
    fast = Producer(Orchestrator(settings=Settings(redis_url=sentinel.url, lease_timeout=LEASE)), "fast")
    replicated = Producer(Orchestrator(settings=Settings(
        redis_url=sentinel.url, lease_timeout=LEASE, durability="replicated", replica_timeout=0.5,
    )), "replicated")
    with Procs(sentinel.url, tmp_path) as procs:
        frozen = procs.worker("frozen", concurrency=3, lease=LEASE, heartbeat=0.1, env=durable, apps=[APP])
        held = [fast.app.enqueue("failover:nap", args=[NAP]).id for _ in range(3)]  # running at the kill
        wait_for(lambda: procs.all_in(held, "RUNNING"), "the frozen worker's 3 tasks", 20, alive=[frozen])
        live = procs.worker("live", concurrency=8, lease=LEASE, heartbeat=0.1, env=durable, apps=[APP])
        scheduler = procs.scheduler(interval=0.05, env=durable)
        alive = [live, frozen, scheduler]
        wait_for(lambda: "Started" in scheduler.log(), "the scheduler to start", 20, alive=alive)
        threads = [threading.Thread(target=p.run, daemon=True) for p in (fast, replicated)]
        for thread in threads:
            thread.start()
        try:
            wait_for(lambda: procs.all_in(held, "RUNNING") and len(fast.acked) > 20 and len(replicated.acked) > 20,
                     "tasks running and producers going", 20, alive=alive)
            frozen.freeze()
            old = sentinel.kill_primary()
            killed_at = time.monotonic()  # (the primary is dead: kill_primary waited for it)
            new_port = sentinel.wait_failover(old.port)
            failover_s = time.monotonic() - killed_at
            old.extra = [*old.extra, "--replicaof", "127.0.0.1", str(new_port)]  # the operator brings it back
            old.start()
            wait_for(lambda: fast.first_after(killed_at) and replicated.first_after(killed_at + failover_s),
                     "enqueues acknowledged after the failover", 20, alive=alive)
            wait_for(lambda: set(held) <= reaped_ids(procs), "the frozen worker's leases reaped", 20, alive=alive)
            frozen.thaw()
            time.sleep(0.5)  # go on producing for a moment after the failover
        finally:
            frozen.thaw()
            for p in (fast, replicated):
                p.stop.set()
            for thread in threads:
                thread.join(10)
        client = sync_client(sentinel.url)
        keys = procs.keys
        replicated_ids = list(replicated.acked)
        wait_for(lambda: procs.all_in(replicated_ids + held, "SUCCESS"),
                 "every replicated enqueue and every running task to succeed", 30, alive=alive)
        lost = [i for i, t in fast.acked.items() if not client.exists(keys.task(i))]
        late = {i: round(fast.acked[i] - killed_at, 3) for i in lost}
        assert all(-WINDOW_S <= t <= 0 for t in late.values()), f"lost outside the window (s after the kill): {late}"
        kept = [i for i in fast.acked if i not in lost]
        wait_for(lambda: procs.all_in(kept, "SUCCESS"), "every kept fast enqueue to succeed", 30, alive=alive)
        completed_after = _first_completion_after(procs, kept, fast, killed_at)
        reaped = reaped_ids(procs)
        assert all(int(procs.record(i)["attempts"]) >= 2 for i in held)  # and ran again
        assert all(p.returncode is None for p in alive)  # the same processes went on
        print(
            f"\nfailover: kill -9 to the sentinels naming the new primary {failover_s:.2f} s; to the first "
            f"acknowledged enqueue {fast.first_after(killed_at):.2f} s (fast), "
            f"{replicated.first_after(killed_at):.2f} s (replicated, after the old primary came back as replica); "
            f"to the first task completed {completed_after:.2f} s; {len(fast.acked)} fast and {len(replicated.acked)} "
            f"replicated enqueues acknowledged, {len(lost)} fast ones lost in the window, "
            f"{len(held)} leases of the frozen worker reaped and run again ({len(reaped)} reaped in all)"
        )
        client.close()
    fast.app.close()
    replicated.app.close()


def _first_completion_after(procs: Procs, ids: list[str], producer: Producer, moment: float) -> float:
    """Seconds from ``moment`` to the first completion of a task enqueued after it (its
    completed_at is Redis's clock: measured against the enqueue's acknowledgement instead)."""
    after = sorted((t, i) for i, t in producer.acked.items() if producer.sent[i] > moment and i in ids)
    assert after, "no task enqueued after the kill"
    first_ack, first_id = after[0]
    record = procs.record(first_id)
    created, completed = int(record["created_at"]), int(record["completed_at"])
    return first_ack - moment + max(0, completed - created) / 1000


def reaped_ids(procs: Procs) -> set[str]:
    """The tasks the reaper requeued (the event stream of the primary now), none while unreachable."""
    try:
        return {e["task"] for e in procs.events("reaped")}
    except (ConnectionError, OSError):  # (redis-py's ConnectionError is one)
        return set()
