"""Sharded queues (#17), on a standalone Redis and on the session's local Redis Cluster.

``app.declare_queue("hot", shards=K)``: the layout stored in ``orch:shards``, each shard's
hash tag on its own master; producers routing by key (stable), by unique key, else round
robin; two different keys refused; a change of K refused while tasks wait; a worker that
drains every shard and loses nothing; the views (status, overview, /metrics' source) and
lookups by id that see the logical queue.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from redis.cluster import RedisCluster

from orchestrator import InvalidSchedule, Orchestrator, Settings, ShardingRefused, TaskState, ValidationError
from orchestrator.cli import orch
from orchestrator.config import WorkerSettings
from orchestrator.keys import QueueKeys, shards_key
from orchestrator.redis_local import LocalCluster, LocalRedis
from orchestrator.server.metrics import exposition
from orchestrator.worker.worker import Worker
from tests.integration.procs import Procs, wait_for

S = TaskState


@pytest.fixture(params=["redis", "cluster"])
def sapp(request: pytest.FixtureRequest, redis_server: LocalRedis) -> Iterator[Orchestrator]:
    if request.param == "cluster":
        cluster: LocalCluster = request.getfixturevalue("redis_cluster")
        cluster.flush()
        url = cluster.url
    else:
        with redis.Redis(port=redis_server.port) as client:
            client.flushdb()
        url = redis_server.url
    app = Orchestrator(settings=Settings(redis_url=url))

    @app.task(name="tests:add", queue="hot")
    def add(a: int, b: int) -> int:
        return a + b

    yield app
    app.close()


def masters_of(app: Orchestrator, queues: tuple[str, ...]) -> list[str]:
    client = app.redis
    if not isinstance(client, RedisCluster):
        return ["standalone"] * len(queues)
    return [client.get_node_from_key(QueueKeys(q).pending).name for q in queues]  # type: ignore[no-untyped-call]


def test_three_shards_sit_on_three_masters_and_the_layout_is_stored(sapp: Orchestrator) -> None:
    layout = sapp.declare_queue("hot", shards=3)
    assert layout.shards == 3 and len(set(layout.queues)) == 3
    assert all(q.startswith("hot#") for q in layout.queues)
    if isinstance(sapp.redis, RedisCluster):
        assert len(set(masters_of(sapp, layout.queues))) == 3  # CRC16 would have put hot#0..2 where it liked
        assert list(layout.masters) == masters_of(sapp, layout.queues)
    record = json.loads(sapp.redis.hget(shards_key(), "hot"))  # readable in redis-cli: HGET orch:shards hot
    assert record == {"shards": 3, "queues": list(layout.queues)}
    assert sapp.declare_queue("hot", shards=3).queues == layout.queues  # the same K: nothing changes
    assert sapp.shard_layouts() == {"hot": layout.queues}


def test_a_key_always_finds_its_shard_and_its_task(sapp: Orchestrator) -> None:
    layout = sapp.declare_queue("hot", shards=3)
    first = [sapp.enqueue("tests:add", [i, 1], key=f"k{i}") for i in range(30)]
    assert {h.queue for h in first} == set(layout.queues)  # 30 keys spread over all three
    again = [sapp.enqueue("tests:add", [i, 1], key=f"k{i}") for i in range(30)]
    assert [(h.id, h.queue) for h in again] == [(h.id, h.queue) for h in first]
    assert not any(h.created for h in again)
    other = Orchestrator(settings=sapp.settings)  # another producer: the same hash, the same shard
    assert other.enqueue("tests:add", [3, 1], key="k3", queue="hot").id == first[3].id
    other.close()
    uniq = sapp.enqueue("tests:add", [0, 0], unique_key="u1")
    assert sapp.enqueue("tests:add", [0, 0], unique_key="u1").id == uniq.id
    assert sapp.enqueue("tests:add", [0, 0], key="same", unique_key="same").created
    spread = [sapp.enqueue("tests:add", [0, 0]).queue for _ in range(6)]  # round robin without keys
    assert sorted(spread) == sorted(layout.queues * 2)


def test_two_different_keys_on_a_sharded_queue_are_refused(sapp: Orchestrator) -> None:
    sapp.declare_queue("hot", shards=3)
    with pytest.raises(ValidationError) as caught:
        sapp.enqueue("tests:add", [1, 1], key="a", unique_key="b")
    assert caught.value.field == "unique_key" and caught.value.queue == "hot"
    assert sapp.stats(["hot"])[0].counts["pending"] == 0  # nothing written
    sapp.enqueue("tests:add", [1, 1], key="a", unique_key="b", queue="plain")  # a plain queue takes both


def test_changing_k_is_refused_while_tasks_wait_and_allowed_when_empty(sapp: Orchestrator) -> None:
    sapp.enqueue("tests:add", [1, 1])  # on the plain queue hot
    with pytest.raises(ShardingRefused) as plain:
        sapp.declare_queue("hot", shards=3)
    assert (plain.value.waiting, plain.value.current, plain.value.shards) == (1, 1, 3)
    sapp.run_until_idle(queues=["hot"])
    layout = sapp.declare_queue("hot", shards=3)
    handle = sapp.enqueue("tests:add", [1, 1])
    [stats] = sapp.stats()  # the plain queue's finished task and the shards' waiting one, each counted once
    assert (stats.queue, stats.counts["success"], stats.counts["pending"]) == ("hot", 1, 1)
    assert [(o.queue, o.counts["success"], o.counts["pending"]) for o in sapp.overview()] == [("hot", 1, 1)]
    with pytest.raises(InvalidSchedule):
        sapp.schedule("tick", "tests:add", every=60, queue="hot", args=[1, 1])
    with pytest.raises(ShardingRefused) as caught:
        sapp.declare_queue("hot", shards=2)
    assert caught.value.fields() == {"code": "SHARDING_REFUSED", "queue": "hot", "field": "shards",
                                     "shards": "2", "current": "3", "waiting": "1"}
    assert sapp.shard_layouts() == {"hot": layout.queues}  # unchanged
    runner = CliRunner().invoke(orch, ["queues", "declare", "hot", "--shards", "2"],
                                env={"ORCH_REDIS_URL": sapp.settings.redis_url, "ORCH_PREFIX": None})
    assert runner.exit_code == 2 and "refused" in runner.output and "Traceback" not in runner.output
    sapp.run_until_idle(queues=["hot"])
    assert handle.status() is S.SUCCESS
    assert sapp.declare_queue("hot", shards=2).shards == 2
    assert sapp.declare_queue("hot", shards=1).queues == ("hot",)
    assert sapp.shard_layouts() == {}


def test_a_worker_drains_every_shard_and_the_views_show_one_queue(sapp: Orchestrator) -> None:
    layout = sapp.declare_queue("hot", shards=3)
    handles = sapp.enqueue_many(
        sapp.request("tests:add", [i, 1], **({"key": f"k{i}"} if i % 2 else {})) for i in range(60)
    )
    assert {h.queue for h in handles} == set(layout.queues)
    runs = sapp.run_until_idle(queues=["hot"])
    assert len(runs) == 60
    assert [h.result(timeout=5) for h in handles] == [i + 1 for i in range(60)]  # nothing lost
    [stats] = sapp.stats(["hot"])
    assert stats.queue == "hot" and stats.counts["success"] == 60 and stats.totals["succeeded"] == 60
    assert [s.queue for s in sapp.stats()] == ["hot"]  # the shards summed, not listed
    assert [(o.queue, o.counts["success"]) for o in sapp.overview()] == [("hot", 60)]
    assert sapp.queue("hot").stats().counts["success"] == 60  # the dashboard's and the API's page
    assert sum(sapp.queue("hot").metrics().enqueued.values()) == 60  # /metrics' source
    body, _ = exposition(sapp)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(body.decode()) for s in f.samples}
    assert samples[("orch_queue_tasks", (("queue", "hot"), ("state", "success")))] == 60
    assert samples[("orch_tasks_enqueued_total", (("queue", "hot"), ("task", "tests:add")))] == 60
    assert not any("#" in v for _, labels in samples for _, v in labels)  # no shard label
    h = handles[7]
    assert sapp.get_task(h.id).state is S.SUCCESS  # found on whichever shard holds it
    assert sapp.get_task(h.id, queue="hot").id == h.id
    assert sapp.task_info(h.id, queue="hot").queue == h.queue
    late = sapp.enqueue("tests:add", [1, 1], delay=60)
    assert sapp.cancel(late.id, queue="hot") is S.CANCELLED
    status = CliRunner().invoke(orch, ["status"], env={"ORCH_REDIS_URL": sapp.settings.redis_url, "ORCH_PREFIX": None})
    assert status.exit_code == 0 and "queue hot:" in status.output and "queue hot#" not in status.output
    assert "sharded: the sum of 3 shards" in status.output
    inspect = CliRunner().invoke(orch, ["inspect", h.id], env={"ORCH_REDIS_URL": sapp.settings.redis_url,
                                                              "ORCH_PREFIX": None})
    assert inspect.exit_code == 0 and h.id in inspect.output


def test_the_worker_claims_across_shards_in_rotation_from_a_random_start(sapp: Orchestrator) -> None:
    layout = sapp.declare_queue("hot", shards=3)
    starts = set()
    for _ in range(20):
        worker = Worker(sapp, WorkerSettings(queues=(("hot", 1), ("other", 1))))
        worker._groups = [(1, layout.queues), (1, ("other",))]
        orders = [worker._queue_order() for _ in range(3)]
        assert all(sorted(o[:3]) == sorted(layout.queues) and o[3] == "other" for o in orders)
        assert len({o[0] for o in orders}) == 3  # each claim starts one shard further
        starts.add(orders[0][0])
    assert len(starts) > 1  # a random first shard (20 workers all on one: 1 in 3^19)


@pytest.fixture
def cluster_procs(redis_cluster: LocalCluster, tmp_path: Path) -> Iterator[Procs]:
    redis_cluster.flush()
    with Procs(redis_cluster.url, tmp_path) as started:
        yield started


def test_orch_worker_drains_a_queue_sharded_over_three_masters(
    cluster_procs: Procs, redis_cluster: LocalCluster
) -> None:
    app = Orchestrator(settings=Settings(redis_url=redis_cluster.url))
    env = {"ORCH_REDIS_URL": redis_cluster.url, "ORCH_PREFIX": None}
    declared = CliRunner().invoke(orch, ["queues", "declare", "hot", "--shards", "3"], env=env)
    assert declared.exit_code == 0 and declared.output.count(" on 127.0.0.1:") == 3, declared.output
    worker = cluster_procs.worker("w1", concurrency=4, queues=["hot"], idle_wait=0.2, ready=False)
    shards = app.shard_layouts()["hot"]
    wait_for(lambda: all(app.redis.zscore(QueueKeys(q).workers, "w1") is not None for q in shards),
             "w1 to register on every shard", 20, alive=[worker])
    handles = app.enqueue_many(app.request("tests:add", [i, 1], queue="hot") for i in range(30))
    for handle in handles:
        wait_for(lambda h=handle: h.status().is_final, f"task {handle.id}", 20, alive=[worker])  # type: ignore[misc]
    assert [h.result() for h in handles] == [i + 1 for i in range(30)]
    assert len({h.queue for h in handles}) == 3
    late = app.enqueue("tests:add", [5, 5], queue="hot")  # the idle worker blocks on each shard's slot
    wait_for(lambda: late.status().is_final, "the idle worker to wake", 10, alive=[worker])
    assert "Traceback" not in worker.log()
    app.close()


def test_a_shard_record_of_the_wrong_type_leaves_every_queue_plain(sapp: Orchestrator) -> None:
    sapp.redis.set(shards_key(), "spoiled by hand")
    handle = sapp.enqueue("tests:add", [1, 1])
    assert handle.queue == "hot" and handle.status() is S.PENDING
    assert sapp.shard_layouts() == {} and sapp.stats(["hot"])[0].counts["pending"] == 1
    assert len(sapp.run_until_idle(queues=["hot"])) == 1


def test_pause_resume_and_purge_act_on_every_shard(sapp: Orchestrator) -> None:
    layout = sapp.declare_queue("hot", shards=3)
    sapp.enqueue_many(sapp.request("tests:add", [i, 1]) for i in range(6))
    hot = sapp.queue("hot")
    assert hot.pause() and hot.is_paused()
    assert all(sapp.queue(q).is_paused() for q in layout.queues)
    assert sapp.overview()[0].paused and sapp.run_until_idle(queues=["hot"]) == []  # no shard is claimed from
    assert hot.resume() and not hot.is_paused()
    assert len(sapp.run_until_idle(queues=["hot"], max_tasks=3)) == 3
    assert hot.purge("pending", dry_run=True) == 3 and hot.purge("pending") == 3
    assert sapp.stats(["hot"])[0].counts["pending"] == 0


def test_the_asyncio_twins_declare_and_read_the_layouts(sapp: Orchestrator) -> None:
    async def scenario() -> tuple[Any, dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
        try:
            layout = await sapp.adeclare_queue("hot", shards=3)
            read = await sapp.ashard_layouts()
            await sapp.adeclare_queue("hot", shards=1)
            return layout, read, await sapp.ashard_layouts()
        finally:
            await sapp.aclose()

    layout, read, after_plain = asyncio.run(scenario())
    assert layout.shards == 3 and read == {"hot": layout.queues}
    assert after_plain == {} == sapp.shard_layouts()  # shards=1: a plain queue again
    with pytest.raises(ValidationError):
        asyncio.run(sapp.adeclare_queue("bad#name", shards=2))
