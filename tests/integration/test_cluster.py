"""orchestrator on a real local Redis Cluster (3 masters, 3 replicas; one per session).

Script calls routed by their queue's slot, one packed write per master; NOSCRIPT reloaded
on the node that answered; a stale slot map corrected by MOVED; a worker serving queues on
three masters (claims, blocking per slot without reconnecting, cancels by pub/sub, delayed
tasks promoted by the scheduler) and the operator views that gather every shard (status,
events, finding a task by id, doctor).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner
from redis.cluster import RedisCluster

from orchestrator import Orchestrator, TaskState
from orchestrator.cli import orch
from orchestrator.connection import is_cluster, sync_client, wake_groups
from orchestrator.keys import QueueKeys
from orchestrator.redis_local import LocalCluster
from orchestrator.script_calls import run_many
from tests.integration.procs import Procs, wait_for

S = TaskState


def spread(client: redis.Redis, n: int = 3) -> list[str]:
    """``n`` queue names whose keys sit on ``n`` different masters."""
    found: dict[str, str] = {}
    assert isinstance(client, RedisCluster)
    for i in range(100):
        name = f"q{i}"
        node = client.get_node_from_key(QueueKeys(name).pending).name  # type: ignore[no-untyped-call]
        found.setdefault(node, name)
        if len(found) == n:
            return sorted(found.values())
    raise AssertionError("the slots of 100 queue names fell on fewer masters")


def test_one_batch_of_calls_reaches_every_master_and_each_call_its_own(capp: Orchestrator) -> None:
    assert is_cluster(capp.redis)
    queues = spread(capp.redis)
    handles = capp.enqueue_many(capp.request("tests:add", [i, 1], queue=q) for i, q in enumerate(queues * 4))
    assert {h.queue for h in handles} == set(queues)
    assert [h.status() for h in handles] == [S.PENDING] * 12
    assert {s.queue: s.counts["pending"] for s in capp.stats(queues)} == dict.fromkeys(queues, 4)
    assert sorted(capp.queues()) == queues  # orch:queues, written beside the scripts on its own slot


def test_a_master_that_lost_its_scripts_is_given_them_again(cluster: LocalCluster, capp: Orchestrator) -> None:
    queues = spread(capp.redis)
    capp.enqueue_many(capp.request("tests:add", [1, 1], queue=q) for q in queues)
    for node in cluster.masters():
        with redis.Redis(port=node.port) as client:
            client.script_flush()  # as a restarted master or a promoted replica
    handles = capp.enqueue_many(capp.request("tests:add", [2, 2], queue=q) for q in queues)
    assert [h.status() for h in handles] == [S.PENDING] * 3


def test_a_stale_slot_map_is_corrected_by_moved(capp: Orchestrator) -> None:
    client = capp.redis
    assert isinstance(client, RedisCluster)
    queue = spread(client)[0]
    key = QueueKeys(queue).pending
    slot = client.keyslot(key)
    owner = client.get_node_from_key(key)  # type: ignore[no-untyped-call]
    wrong = next(n for n in client.get_primaries() if n.name != owner.name)  # type: ignore[no-untyped-call]
    client.nodes_manager.slots_cache[slot] = [wrong]  # as after a resharding the client missed
    [handle] = capp.enqueue_many([capp.request("tests:add", [1, 2], queue=queue)])
    assert handle.status() is S.PENDING
    assert client.nodes_manager.slots_cache[slot][0].name == owner.name


def test_keyless_commands_ride_with_the_calls(capp: Orchestrator) -> None:
    from orchestrator.script_calls import command

    queue = spread(capp.redis)[0]
    [now, size] = run_many(capp.redis, [command("TIME"), command("ZCARD", QueueKeys(queue).pending)])
    assert len(now) == 2 and size == 0


def test_blocking_waits_are_split_per_slot(capp: Orchestrator) -> None:
    queues = spread(capp.redis)
    keys = [QueueKeys(q).wake for q in [*queues, queues[0]]]
    assert sorted(map(len, wake_groups(capp.aredis, keys))) == [1, 1, 2]
    assert wake_groups(sync_client("redis://127.0.0.1:1/0"), keys) == [keys]


@pytest.fixture
def procs(cluster: LocalCluster, tmp_path: Path) -> Iterator[Procs]:
    with Procs(cluster.url, tmp_path) as started:
        yield started


def connections_received(masters: list[redis.Redis]) -> int:
    """Connections the masters accepted so far (``masters``: clients kept open meanwhile)."""
    return sum(int(client.info("stats")["total_connections_received"]) for client in masters)


def test_a_worker_serves_queues_on_three_masters(procs: Procs, capp: Orchestrator, cluster: LocalCluster) -> None:
    queues = spread(capp.redis)
    worker = procs.worker("w1", concurrency=4, queues=queues, idle_wait=0.2)
    handles = capp.enqueue_many(capp.request("tests:add", [i, 1], queue=q) for i, q in enumerate(queues * 3))
    for handle in handles:
        wait_for(lambda h=handle: h.status().is_final, f"task {handle.id}", 20, alive=[worker])  # type: ignore[misc]
    assert [h.result() for h in handles] == [i + 1 for i in range(9)]
    time.sleep(0.3)  # idle now: blocked on each slot's wake-up key
    late = capp.enqueue("tests:add", [5, 5], queue=queues[2])
    wait_for(lambda: late.status().is_final, "the idle worker to wake", 10, alive=[worker])
    assert late.result() == 10
    masters = [redis.Redis(port=node.port) for node in cluster.masters()]
    before = connections_received(masters)
    for i in range(6):  # each one wakes the idle worker: the other slots' BLPOPs go on waiting
        time.sleep(0.05)
        woke = capp.enqueue("tests:add", [i, 0], queue=queues[i % 3])
        wait_for(lambda h=woke: h.status().is_final, "the idle worker to wake", 10, alive=[worker])  # type: ignore[misc]
    assert connections_received(masters) - before <= 2, "a wake-up cost reconnections"
    for client in masters:
        client.close()
    procs.scheduler(queues=queues)
    delayed = capp.enqueue_many(capp.request("tests:add", [i, 2], queue=q, delay=0.2) for i, q in enumerate(queues))
    for handle in delayed:  # promoted by the scheduler on each master, then run
        wait_for(lambda h=handle: h.status().is_final, f"delayed task {handle.id}", 20, alive=[worker])  # type: ignore[misc]
    assert [h.status() for h in delayed] == [S.SUCCESS] * 3
    long = capp.enqueue("tests:asleep", [30], queue=queues[1])
    wait_for(lambda: long.status() is S.RUNNING, "the long task to start", 10, alive=[worker])
    assert capp.cancel(long.id) is S.RUNNING  # published; the worker hears it on its shard's channel
    wait_for(lambda: long.status() is S.CANCELLED, "the cancel to reach the worker", 10, alive=[worker])
    assert "Traceback" not in worker.log()


def test_operator_views_gather_every_shard(capp: Orchestrator, cluster: LocalCluster) -> None:
    queues = spread(capp.redis)
    handles = capp.enqueue_many(capp.request("tests:add", [1, 1], queue=q) for q in queues)
    assert {o.queue for o in capp.overview()} >= set(queues)
    assert {e.queue for e in capp.events(count=10)} == set(queues)
    last = capp.last_event_ids(queues)
    capp.enqueue("tests:add", [2, 2], queue=queues[1])
    assert [e.queue for e in capp.next_events(last, block_ms=500)] == [queues[1]]
    assert capp.find_queue(handles[2].id).name == handles[2].queue
    result = CliRunner().invoke(orch, ["status"], env={"ORCH_REDIS_URL": cluster.url, "ORCH_PREFIX": None})
    assert result.exit_code == 0, result.output
    assert all(q in result.output for q in queues)


def test_orch_doctor_checks_and_repairs_every_queue_on_its_master(capp: Orchestrator, cluster: LocalCluster) -> None:
    queues = spread(capp.redis)
    capp.enqueue_many(capp.request("tests:add", [1, 1], queue=q) for q in queues)
    env = {"ORCH_REDIS_URL": cluster.url, "ORCH_PREFIX": None}
    for args in (["doctor", "--json"], ["doctor", "--repair"]):
        result = CliRunner().invoke(orch, args, env=env)
        assert result.exit_code in (0, 1), result.output  # 1: warnings (no worker), not an error
    checks = CliRunner().invoke(orch, ["doctor", "--json"], env=env).output
    assert all(f'"data {q}"' in checks for q in queues)


def test_an_unreachable_cluster_is_one_line_and_exit_code_3() -> None:
    result = CliRunner().invoke(orch, ["status"], env={"ORCH_REDIS_URL": "redis+cluster://127.0.0.1:1,127.0.0.1:2"})
    assert result.exit_code == 3
    assert "no node of the Redis Cluster answered (2 listed)" in result.output
    assert "Traceback" not in result.output
