"""Durability "replicated" on a real Sentinel set (one primary, one replica, three
sentinels: ``LocalSentinel``): what a failover keeps of acknowledged writes.

Deterministic: the replica is detached first (``REPLICAOF NO ONE``), so nothing written
after that reaches it; then the primary is killed -9 and the sentinels promote the former
replica. Acknowledged fast enqueues of that window are gone; replicated ones raised
NotReplicated instead of acknowledging. With the replica attached, replicated enqueues
survive the failover. Also: WAIT rides in the enqueue's own round trip, enqueue_many and
cancel report NotReplicated with their fields, the CLI reads ORCH_DURABILITY, a cluster
gets one WAIT per master, and a worker whose outcomes no replica confirms logs it and
goes on.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from click.testing import CliRunner

from orchestrator import NotReplicated, Orchestrator, Settings, TaskState, WorkerSettings
from orchestrator.cli import orch
from orchestrator.connection import sync_client
from orchestrator.local_sentinel import LocalSentinel
from orchestrator.redis_local import LocalCluster, LocalRedis
from orchestrator.worker.worker import Worker
from tests.integration.test_worker_failures import add, run_worker_until

WINDOW = 5  # tasks enqueued while the replica is detached


@pytest.fixture
def sentinel() -> Iterator[LocalSentinel]:
    with LocalSentinel() as s:
        yield s


def app_on(s: LocalSentinel, durability: str = "fast", replica_timeout: float = 0.2) -> Orchestrator:
    settings = Settings(redis_url=s.url, durability=durability, replica_timeout=replica_timeout)  # type: ignore[arg-type]
    return Orchestrator(settings=settings)


def detach_replica(s: LocalSentinel) -> None:
    """The replica stops replicating (it keeps what it has): writes from now on reach only the primary."""
    replica = redis.Redis(port=s.replica.port)
    replica.replicaof("NO", "ONE")
    replica.close()


def fail_over(s: LocalSentinel) -> float:
    """kill -9 the primary; wait until the sentinels name the former replica. Seconds taken."""
    started = time.monotonic()
    old = s.kill_primary().port
    s.wait_failover(old)
    return time.monotonic() - started


def present(s: LocalSentinel, app: Orchestrator, ids: list[str]) -> list[str]:
    client = sync_client(s.url)
    try:
        return [i for i in ids if client.exists(app.keys("default").task(i))]
    finally:
        client.close()


def test_fast_acknowledged_enqueues_of_the_window_are_lost_on_failover(sentinel: LocalSentinel) -> None:
    patient = app_on(sentinel, "replicated", replica_timeout=1.5)  # on the replica before it detaches
    before = [patient.enqueue("tests:add", args=[i, 1], key=f"before-{i}").id for i in range(3)]
    patient.close()
    app = app_on(sentinel, "fast")
    detach_replica(sentinel)
    window = [app.enqueue("tests:add", args=[i, 2], key=f"window-{i}").id for i in range(WINDOW)]  # acknowledged
    app.close()
    fail_over(sentinel)
    assert present(sentinel, app, before) == before
    assert present(sentinel, app, window) == []  # acknowledged, then lost with the primary


def test_replicated_enqueue_raises_instead_of_acknowledging_what_a_failover_loses(sentinel: LocalSentinel) -> None:
    patient = app_on(sentinel, "replicated", replica_timeout=1.5)  # a loaded machine's replica may lag 200 ms
    before = [patient.enqueue("tests:add", args=[i, 1], key=f"before-{i}").id for i in range(3)]  # confirmed
    patient.close()
    app = app_on(sentinel, "replicated")  # 200 ms per refusal below
    detach_replica(sentinel)
    refused = []
    for i in range(WINDOW):
        with pytest.raises(NotReplicated) as info:
            app.enqueue("tests:add", args=[i, 2], key=f"window-{i}")
        exc = info.value
        assert (exc.acked, exc.wanted, exc.queue) == (0, 1, "default") and exc.task_id
        assert exc.to_dict()["acked"] == "0" and "enqueue it again with the same key" in str(exc)
        refused.append(exc.task_id)
    app.close()
    fail_over(sentinel)
    assert present(sentinel, app, before) == before  # every acknowledged task survived
    assert present(sentinel, app, refused) == []  # only the unacknowledged ones are gone
    again = app_on(sentinel, "fast")  # the producer retries with its keys: enqueued once, now
    try:
        ids = [again.enqueue("tests:add", args=[i, 2], key=f"window-{i}").id for i in range(WINDOW)]
        assert len(set(ids)) == WINDOW and present(sentinel, again, ids) == ids
    finally:
        again.close()


def test_replicated_enqueues_survive_a_failover_with_the_replica_attached(sentinel: LocalSentinel) -> None:
    app = app_on(sentinel, "replicated", replica_timeout=1.0)
    primary = redis.Redis(port=sentinel.primary_port())
    primary.script_flush()  # NOSCRIPT first: WAIT goes again with the call sent after the load
    primary.close()
    ids = [app.enqueue("tests:add", args=[i, 1]).id for i in range(20)]
    handles = app.enqueue_many([app.request("tests:add", args=[i, 3]) for i in range(20)])
    app.close()
    fail_over(sentinel)
    everything = ids + [h.id for h in handles]
    assert present(sentinel, app, everything) == everything


def test_enqueue_many_and_cancel_report_not_replicated_with_their_fields(sentinel: LocalSentinel) -> None:
    fast = app_on(sentinel, "fast")  # the victim need not be confirmed: 50 ms could be too short under load
    victim = fast.enqueue("tests:add", args=[1, 1]).id
    fast.close()
    app = app_on(sentinel, "replicated", replica_timeout=0.05)
    try:
        detach_replica(sentinel)
        with pytest.raises(NotReplicated) as many:
            app.enqueue_many([app.request("tests:add", args=[i, 1]) for i in range(3)])
        assert len(many.value.reply) == 3 and many.value.acked == 0
        with pytest.raises(NotReplicated) as cancelled:
            app.cancel(victim, "default")
        assert (cancelled.value.task_id, cancelled.value.queue) == (victim, "default")
        assert app.get_task(victim, "default").state.value == "CANCELLED"  # done on the primary
    finally:
        app.close()


def test_orch_enqueue_reads_orch_durability_and_exits_4_when_not_replicated(sentinel: LocalSentinel) -> None:
    detach_replica(sentinel)
    env = {"ORCH_REDIS_URL": sentinel.url, "ORCH_DURABILITY": "replicated", "ORCH_REPLICA_TIMEOUT": "0.05"}
    result = CliRunner().invoke(orch, ["enqueue", "tests:add", "--args", "[1, 2]", "--key", "k1"], env=env)
    assert result.exit_code == 4, result.output
    assert "0 of 1 replicas confirmed it" in result.output and "Traceback" not in result.output
    fast = CliRunner().invoke(orch, ["enqueue", "tests:add", "--args", "[1, 2]", "--key", "k1"],
                              env={**env, "ORCH_DURABILITY": "fast"})
    assert fast.exit_code == 0, fast.output  # the same task, acknowledged by the primary alone


def test_on_a_cluster_wait_follows_each_masters_calls(redis_cluster: LocalCluster) -> None:
    """One WAIT per master, after its calls on its connection: each master has one replica,
    so wanting one is confirmed everywhere and wanting two is refused, naming what acked."""
    redis_cluster.flush()
    queues = [f"q{i}" for i in range(12)]  # spread over the three masters by their slots
    one = Orchestrator(settings=Settings(redis_url=redis_cluster.url, durability="replicated"))
    two = Orchestrator(settings=Settings(redis_url=redis_cluster.url, durability="replicated", replicas=2,
                                         replica_timeout=0.05))
    try:
        handles = one.enqueue_many(one.request("tests:add", [i, 1], queue=q) for i, q in enumerate(queues))
        assert len(handles) == len(queues)
        with pytest.raises(NotReplicated) as info:
            two.enqueue_many(two.request("tests:add", [i, 2], queue=q) for i, q in enumerate(queues))
        assert (info.value.acked, info.value.wanted, len(info.value.reply)) == (1, 2, len(queues))
    finally:
        one.close()
        two.close()


def test_a_worker_whose_outcomes_no_replica_confirms_logs_it_and_goes_on(
    redis_server: LocalRedis, r: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """No replica at all: each completion waits replica_timeout, is recorded on the primary,
    logged as not replicated (rate-limited), and the worker takes the next task."""
    app = Orchestrator(settings=Settings(redis_url=redis_server.url, durability="replicated", replica_timeout=0.01))
    try:
        fast = Orchestrator(settings=Settings(redis_url=redis_server.url))
        handles = [fast.enqueue("tests:add", [i, 1]) for i in range(3)]
        fast.close()
        worker = Worker(app, WorkerSettings(concurrency=1, name="w1", pool="asyncio"), {"tests:add": add})
        run_worker_until(app, worker, lambda: all(h.status() is TaskState.SUCCESS for h in handles))
        assert [h.result(timeout=1) for h in handles] == [1, 2, 3]
        assert any("0 of 1 replicas confirmed it" in m and "may run again" in m for m in caplog.messages)
    finally:
        app.close()
