"""Edge cases a review found in the scripts: each test failed before its fix.

Same harness as test_scripts.py (``Q.run`` checks every transition and index; ``Q.fails``
checks that a refusal changes nothing byte for byte).
"""

from __future__ import annotations

import pytest

from orchestrator.errors import LeaseLost
from orchestrator.models import TaskState
from orchestrator.script_calls import run
from tests.lua.limits import NO_COMMANDSTATS, ONE_SERVER_STATS
from tests.lua.test_scripts import ERROR, Q, server_ms

S = TaskState


@pytest.fixture
def q(r) -> Q:
    return Q(r)


# ------------------------------------------------------------------ backoff bounds


def test_fail_with_zero_backoff_and_a_huge_attempt_count_retries_at_once(q: Q, r) -> None:
    """0 * 2^1024 was NaN: run_at '-nan', the task left running and in no index."""
    [task_id] = q.add(backoff_ms=0)
    [lease] = q.claim()
    r.hset(q.keys.task(task_id), mapping={"attempts": 2000, "max_retries": 5000})  # each valid, hand-edited
    before = server_ms(r)
    reply = q.run(q.at().fail(task_id, lease.token, ERROR))
    assert reply.state is S.RETRYING and before <= reply.run_at <= server_ms(r)
    assert q.score("retrying", task_id) == reply.run_at


def test_fail_with_a_huge_attempt_count_waits_backoff_max(q: Q, r) -> None:
    """2^(attempts-1) overflowed to inf; the delay is capped by backoff_max_ms."""
    [task_id] = q.add(backoff_ms=1000, backoff_max_ms=7000)
    [lease] = q.claim()
    r.hset(q.keys.task(task_id), mapping={"attempts": 2000, "max_retries": 5000})
    before = server_ms(r)
    reply = q.run(q.at().fail(task_id, lease.token, ERROR))
    assert before + 7000 <= reply.run_at <= server_ms(r) + 7000
    assert q.score("retrying", task_id) == reply.run_at


# ------------------------------------------------------------------ reap and worker keys


def test_reap_deletes_a_dead_worker_key_of_any_type_in_one_pass(q: Q, r) -> None:
    """reap read the worker hash after its writes: a string there failed it midway, every pass."""
    [task_id] = q.add(max_retries=2, backoff_ms=100)
    q.claim(worker="w1", lease_ms=1000)
    r.zadd(q.keys.workers, {"ghost": 1})
    r.set(q.keys.worker("ghost"), "not a hash")
    reply = q.run(q.at(5000).reap(10))
    assert [(x.task_id, x.state) for x in reply.tasks] == [(task_id, S.RETRYING)]
    assert reply.dead_workers == [("ghost", None)]
    assert not r.exists(q.keys.worker("ghost")) and r.zcard(q.keys.workers) == 0


# ------------------------------------------------------------------ the token counter


def server_us(r) -> int:
    sec, usec = r.time()
    return int(sec) * 1_000_000 + int(usec)


def test_a_new_token_counter_starts_from_redis_time_so_tokens_only_grow(q: Q, r) -> None:
    """A counter deleted by hand restarted at 1: a stale holder's token could come back."""
    q.add(2)
    before = server_us(r)
    [old] = q.claim()
    assert int(old.token) >= before  # a fresh queue too: from Redis TIME in microseconds
    r.delete(q.keys.tokens)
    [new] = q.claim()
    assert int(new.token) > int(old.token)
    assert r.get(q.keys.tokens) == new.token.encode()


def test_a_token_counter_set_back_by_a_failover_still_issues_unused_tokens(q: Q, r) -> None:
    """A promoted replica may miss the last writes (the zombie's claim, the counter's INCR
    among them): its tokens still start at Redis TIME in microseconds, past the zombie's,
    whose complete is refused."""
    q.add(id="t")
    q.add(id="u")
    [first] = q.claim()  # an earlier claim the replica did get
    replica = {key: r.dump(key) for key in r.scan_iter()}  # what the replica holds at the kill
    [zombie] = q.claim()  # replicated to nobody: lost in the failover
    assert (first.task_id, zombie.task_id) == ("t", "u")
    r.flushdb()
    for key, value in replica.items():  # the promoted replica serves from here
        r.restore(key, 0, value)
    assert int(r.get(q.keys.tokens)) < int(zombie.token)  # the counter was set back
    [fresh] = q.claim()
    assert fresh.task_id == zombie.task_id and int(fresh.token) > int(zombie.token)
    q.fails(LeaseLost, q.at().complete(zombie.task_id, zombie.token, b"1", 0))
    assert int(r.get(q.keys.tokens)) == int(fresh.token)  # the counter moved on with it
    q.run(q.at().complete(fresh.task_id, fresh.token, b"1", 0))


def test_tokens_stay_past_the_counter_when_it_is_ahead_of_the_clock(q: Q, r) -> None:
    """A counter ahead of TIME (set by repair, or a faster clock before a failover) still rules."""
    q.add(3)
    ahead = server_us(r) + 10**12
    r.set(q.keys.tokens, ahead)
    tokens = [int(lease.token) for lease in q.claim(3)]
    assert tokens == [ahead + 1, ahead + 2, ahead + 3] and int(r.get(q.keys.tokens)) == ahead + 3


# ------------------------------------------------------------------ retry_failed paging


def _failed_in_order(q: Q, r, spoiled: int, good: int) -> tuple[list[str], list[str]]:
    """``spoiled`` malformed FAILED records at the head of the failed set, then ``good`` ones."""
    bad = [q.fail_to_dead_letter() for _ in range(spoiled)]
    fine = [q.fail_to_dead_letter() for _ in range(good)]
    for i, task_id in enumerate(bad + fine):
        r.zadd(q.keys.failed, {task_id: 1000 + i})  # this order, whatever the clock said
    for task_id in bad:
        r.hset(q.keys.task(task_id), "priority", "high")
    return bad, fine


def test_retry_failed_pages_past_malformed_records(q: Q, r) -> None:
    """Pages came back short (malformed ones skipped): retry_failed(all) stopped early, or at 0."""
    bad, fine = _failed_in_order(q, r, spoiled=3, good=2)
    first = q.run(q.at().retry_failed_page(2))
    assert (first.moved, first.offset, first.more) == ([], 2, True)
    second = q.run(q.at().retry_failed_page(2, first.offset))
    assert (second.moved, second.offset, second.more) == ([fine[0]], 3, True)
    third = q.run(q.at().retry_failed_page(2, second.offset))
    assert (third.moved, third.offset, third.more) == ([fine[1]], 3, False)
    assert q.members("failed") == bad


def test_queue_retry_failed_moves_every_good_record_behind_malformed_ones(app, r, monkeypatch) -> None:
    import orchestrator.queues as queues

    monkeypatch.setattr(queues, "BATCH", 3)
    q = Q(r)
    bad, fine = _failed_in_order(q, r, spoiled=4, good=5)
    assert app.queue("default").retry_failed() == 5
    assert q.members("failed") == bad and sorted(q.members("pending")) == sorted(fine)


# ------------------------------------------------------------------ calls per operation


def _commands(r, call_script) -> dict[str, int]:
    """The Redis commands one script call made (commandstats, without the EVALSHA itself)."""
    r.config_resetstat()
    call_script()
    stats = r.info("commandstats")
    skip = ("cmdstat_evalsha", "cmdstat_config|resetstat", "cmdstat_info")
    return {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items() if k not in skip}


@pytest.mark.fakeredis_limit(NO_COMMANDSTATS)
@pytest.mark.cluster_skip(ONE_SERVER_STATS)
def test_an_idle_claim_costs_one_call_and_complete_reads_the_record_once(q: Q, r) -> None:
    """Idle polling made 3 calls; complete re-read error, unique_key and key with 3 HGETs.
    (An idle claim reads the pause flag too: two calls.)"""
    t = q.at()
    q.claim()  # loads the script
    assert _commands(r, lambda: run(r, t.claim("w1", 5, 60_000))) == {"get": 1, "zrange": 1}
    [task_id] = q.add(key="k", unique_key="u")
    [lease] = q.claim()
    made = _commands(r, lambda: run(r, t.complete(task_id, lease.token, b"1", 60_000)))
    assert made["hmget"] == 2, made  # corrupt_queue's (series_minute too) and read_task's
    # No HGET (7, of the stats counters, when a new minute began since the enqueue: its snapshot)
    assert made.get("hget", 0) in (0, 7), made
    task = q.task(task_id)
    assert task.state is S.SUCCESS and r.ttl(q.keys.idempotency("k")) > 0 and not r.exists(q.keys.unique("u"))
