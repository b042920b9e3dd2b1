"""``orch doctor`` finds what hand-written data broke in a queue; ``--repair`` mends what can be derived.

Each test spoils a live queue with plain Redis commands (as a producer's ACL user could),
checks the finding, repairs, and checks the queue works on: the tasks are where their
records say, tokens still grow, enqueue goes on in order.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import redis
from click.testing import CliRunner, Result

from orchestrator import Orchestrator, TaskState
from orchestrator.cli import orch
from orchestrator.integrity import find_orphans, inspect_known_queues, inspect_queue, repair, repair_queue
from orchestrator.keys import QueueKeys, queues_key
from orchestrator.script_calls import run
from tests.redis_server import RedisServer

K = QueueKeys("default")


def doctor(redis_server: RedisServer, *args: str) -> Result:
    clean: dict[str, str | None] = {k: None for k in os.environ if k.startswith("ORCH_")}
    return CliRunner().invoke(orch, ["doctor", *args], env={**clean, "ORCH_REDIS_URL": redis_server.url})


def line_of(result: Result, name: str) -> str:
    return next(line for line in result.stdout.splitlines() if f"] {name}" in line)


def claim(app: Orchestrator, n: int = 1) -> list[Any]:
    return run(app.redis, app._scripts("default").claim("w1", n, 60_000))


def fix(app: Orchestrator) -> list[str]:
    return repair(app.redis, "orch", events_maxlen=app.settings.events_maxlen)


# ------------------------------------------------------------------------ orphans


@pytest.mark.parametrize("state", ["PENDING", "SCHEDULED", "RUNNING", "FAILED"])
def test_a_record_in_no_index_is_reported_and_put_back(app: Orchestrator, r: redis.Redis, state: str) -> None:
    handle = app.enqueue("pkg.mod:fn", delay=60 if state == "SCHEDULED" else None, max_retries=0)
    app.enqueue("pkg.mod:fn")  # a bystander
    index = {"PENDING": K.pending, "SCHEDULED": K.scheduled, "RUNNING": K.running, "FAILED": K.failed}[state]
    if state in ("RUNNING", "FAILED"):
        [lease] = claim(app)
        if state == "FAILED":
            run(r, app._scripts("default").fail(lease.task_id, lease.token, b"{}", mode="retry", ttl_ms=0))
    before = r.zscore(index, handle.id)
    assert handle.status() is TaskState(state) and before is not None
    r.zrem(index, handle.id)

    [found] = inspect_queue(r, K)
    assert handle.id in found.what and "no index" in found.what
    assert fix(app) == [f"task {handle.id} ({state}) put back into {index}"]
    assert inspect_queue(r, K) == []
    after = r.zscore(index, handle.id)
    assert after is not None
    if state == "RUNNING":
        seconds, micros = r.time()
        assert after <= seconds * 1000 + micros // 1000  # its lease expired: the reaper counts the attempt
    else:
        assert after == before  # pending: its score field; scheduled: run_at; failed: completed_at
    assert handle.status() is TaskState(state)


def test_orphans_are_found_across_scan_batches(app: Orchestrator, r: redis.Redis) -> None:
    r.config_resetstat()  # commandstats count the whole session's server: other tests may run KEYS
    handles = [app.enqueue("pkg.mod:fn", [i]) for i in range(40)]
    r.zrem(K.pending, *[h.id for h in handles[::3]])
    found = {o.task_id for o in find_orphans(r, K, batch=5)}
    assert found == {h.id for h in handles[::3]}
    assert int(r.info("commandstats")["cmdstat_scan"]["calls"]) > 1  # bounded batches, never KEYS
    assert "cmdstat_keys" not in r.info("commandstats")


def test_repair_leaves_a_record_that_moved_meanwhile(app: Orchestrator, r: redis.Redis) -> None:
    handle = app.enqueue("pkg.mod:fn")
    r.zrem(K.pending, handle.id)
    [orphan] = find_orphans(r, K)
    r.hset(K.task(handle.id), "state", "CANCELLED")  # a script moved it after the scan
    r.zadd(K.cancelled, {handle.id: 1})
    assert repair_queue(r, K, events_maxlen=100) == []
    assert r.zscore(K.pending, handle.id) is None and orphan.index == "pending"


@pytest.mark.parametrize("state", ["RETRYING", "CANCELLED"])
def test_a_task_left_in_its_index_from_before_the_split_is_moved(
    app: Orchestrator, r: redis.Redis, state: str
) -> None:
    handle = app.enqueue("pkg.mod:fn", max_retries=3)
    [lease] = claim(app)
    if state == "RETRYING":
        run(app.redis, app._scripts("default").fail(handle.id, lease.token, b'{"type": "E", "message": "m"}'))
        new, old = K.retrying, K.scheduled
    else:
        app.cancel(handle.id)
        run(app.redis, app._scripts("default").fail(handle.id, lease.token, b"{}", mode="cancelled"))
        new, old = K.cancelled, K.done
    score = r.zscore(new, handle.id)
    r.zrem(new, handle.id)
    r.zadd(old, {handle.id: score})  # where the task sat before the index split
    [found] = inspect_queue(r, K)
    assert f"is in {old.rsplit(':', 1)[1]}, not {new.rsplit(':', 1)[1]}" in found.what
    assert fix(app) == [f"task {handle.id} ({state}) moved from {old} to {new}"]
    assert r.zscore(new, handle.id) == score and r.zscore(old, handle.id) is None
    assert inspect_queue(r, K) == []


def test_promote_still_takes_a_retrying_task_from_scheduled(app: Orchestrator, r: redis.Redis) -> None:
    handle = app.enqueue("pkg.mod:fn", max_retries=3)
    [lease] = claim(app)
    run(app.redis, app._scripts("default").fail(handle.id, lease.token, b'{"type": "E", "message": "m"}'))
    r.zrem(K.retrying, handle.id)
    r.zadd(K.scheduled, {handle.id: 0})  # before the split, and due
    assert run(app.redis, app._scripts("default").promote(10)).moved == 1
    assert handle.status() is TaskState.PENDING and r.zcard(K.scheduled) == 0


# ------------------------------------------------------------ entries with no record


def test_an_index_entry_whose_record_is_gone_is_dropped_with_an_event(app: Orchestrator, r: redis.Redis) -> None:
    gone, kept = app.enqueue("pkg.mod:fn"), app.enqueue("pkg.mod:fn")
    r.delete(K.task(gone.id))
    [found] = inspect_queue(r, K)
    assert gone.id in found.what and "record is gone" in found.what
    assert fix(app) == [f"dropped task {gone.id} from {K.pending}: its record is gone"]
    assert r.zrange(K.pending, 0, -1) == [kept.id.encode()]
    last = r.xrevrange(K.events, count=1)[0][1]
    assert last[b"event"] == b"dropped" and last[b"task"] == gone.id.encode()


# ------------------------------------------------------------------ queue-wide keys


def test_an_index_of_the_wrong_type_is_moved_aside_and_rebuilt_from_the_records(
    app: Orchestrator, r: redis.Redis
) -> None:
    handles = [app.enqueue("pkg.mod:fn", [i], priority=i % 3) for i in range(6)]
    order = r.zrange(K.pending, 0, -1)
    r.delete(K.pending)
    r.set(K.pending, "spoiled")
    assert any("is a string, not a zset" in f.what for f in inspect_queue(r, K))
    done = fix(app)
    assert done[0].startswith(f"moved {K.pending} (string) aside to {K.pending}:corrupt:")
    assert r.zrange(K.pending, 0, -1) == order  # every task back, in its place
    assert r.keys(f"{K.pending}:corrupt:*") and r.get(r.keys(f"{K.pending}:corrupt:*")[0]) == b"spoiled"
    assert [lease.task_id for lease in claim(app, 6)] == [o.decode() for o in order]
    assert {h.id for h in handles} == {o.decode() for o in order}


@pytest.mark.parametrize("spoil", ["abc", "0"])
def test_the_token_counter_is_set_past_every_token_in_use_from_redis_time(
    app: Orchestrator, r: redis.Redis, spoil: str
) -> None:
    for _ in range(3):
        app.enqueue("pkg.mod:fn")
    leases = claim(app, 2)
    highest = max(int(lease.token) for lease in leases)
    r.set(K.tokens, spoil)  # "0": a valid count, but behind the tokens in use
    assert any("lease-token counter" in f.what for f in inspect_queue(r, K))
    fix(app)
    seconds, _ = r.time()
    value = int(r.get(K.tokens) or 0)
    assert value > highest and value >= seconds * 1000
    [lease] = claim(app)
    assert int(lease.token) > value  # tokens only grow
    assert inspect_queue(r, K) == []


def test_counters_that_are_not_integers_are_reset_and_seq_goes_on_after_pending(
    app: Orchestrator, r: redis.Redis
) -> None:
    first = [app.enqueue("pkg.mod:fn", [i]) for i in range(3)]
    r.hset(K.stats, mapping={"seq": "x", "enqueued": "1e3"})
    found = inspect_queue(r, K)
    assert {f.what.split()[1] for f in found} == {"seq", "enqueued"}
    fix(app)
    assert r.hget(K.stats, "seq") == b"4" and r.hget(K.stats, "enqueued") == b"0"
    later = app.enqueue("pkg.mod:fn", [3])
    assert [lease.task_id for lease in claim(app, 4)] == [h.id for h in [*first, later]]  # FIFO kept


# ------------------------------------------------------------------ the known-queues set


def test_the_known_queues_set_is_cleaned_and_completed_from_the_keys(app: Orchestrator, r: redis.Redis) -> None:
    app.enqueue("pkg.mod:fn", queue="a", delay=60)
    app.enqueue("pkg.mod:fn", queue="b")
    r.srem(queues_key(), "a")
    r.sadd(queues_key(), "bad name", b"\xff")
    problems = inspect_known_queues(r, "orch")
    assert any("'bad name'" in p for p in problems) and any("a (not served)" in p for p in problems)
    fix(app)
    assert r.smembers(queues_key()) == {b"a", b"b"}
    r.delete(queues_key())
    r.set(queues_key(), "spoiled")
    fix(app)
    assert r.smembers(queues_key()) == {b"a", b"b"} and r.keys(f"{queues_key()}:corrupt:*")


# ------------------------------------------------------------------------------ CLI


def test_orch_doctor_names_the_damage_and_repair_mends_it(
    app: Orchestrator, r: redis.Redis, redis_server: RedisServer
) -> None:
    handle = app.enqueue("pkg.mod:fn")
    r.zrem(K.pending, handle.id)
    r.set(K.tokens, "abc")
    result = doctor(redis_server)
    assert result.exit_code == 1
    line = line_of(result, "data default")
    assert line.startswith("[FAIL]") and handle.id in line and "lease-token counter" in line
    result = doctor(redis_server, "--repair")
    repaired = [line for line in result.stdout.splitlines() if line.startswith("[REPAIRED]")]
    assert len(repaired) == 2 and handle.id in repaired[1]
    assert line_of(result, "data default").startswith("[  OK]")
    assert handle.status() is TaskState.PENDING and r.zscore(K.pending, handle.id) is not None
    assert doctor(redis_server, "--repair", "--scheduler").exit_code == 2  # one mode at a time


@pytest.mark.parametrize("spoil", ["wrong type", "deleted"])
def test_a_token_counter_moved_aside_or_deleted_is_set_past_every_token(
    app: Orchestrator, r: redis.Redis, spoil: str
) -> None:
    """Repair moved a counter of the wrong type aside and set nothing: claims restarted at 1."""
    for _ in range(2):
        app.enqueue("pkg.mod:fn")
    [held] = claim(app)
    r.delete(K.tokens)
    if spoil == "wrong type":
        r.hset(K.tokens, "x", "1")
    assert any("lease-token counter" in f.what or K.tokens in f.what for f in inspect_queue(r, K))
    done = fix(app)
    assert any("lease-token counter" in line for line in done)
    seconds, _ = r.time()
    assert int(r.get(K.tokens) or 0) >= max(int(held.token) + 1, seconds * 1000)
    [lease] = claim(app)
    assert int(lease.token) > int(held.token)  # tokens only grow
    assert inspect_queue(r, K) == []


@pytest.mark.parametrize(("name", "kind"), [("metrics", "hash"), ("names", "set")])
def test_a_metrics_key_of_the_wrong_type_is_found_and_moved_aside_so_counting_resumes(
    app: Orchestrator, r: redis.Redis, name: str, kind: str
) -> None:
    """The scripts write metrics best effort (a spoiled key costs the counts, never a task):
    doctor is where an operator learns the counts stopped."""
    key = getattr(K, name)
    r.set(key, "spoiled")
    app.enqueue("pkg.mod:fn", [1])
    assert any(f"{key} is a string, not a {kind}" in f.what for f in inspect_queue(r, K))
    assert any(line.startswith(f"moved {key} (string) aside") for line in fix(app))
    assert not [f for f in inspect_queue(r, K) if key in f.what]
    app.enqueue("pkg.mod:fn", [2])
    assert app.queue("default").metrics().enqueued.get("pkg.mod:fn") == 1  # (names spoiled: the first as __other__)
