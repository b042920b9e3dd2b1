"""rollup.lua: the load sample in each minute's series and the 15-minute roll-ups.

The sample (live workers only, once a minute whoever calls, expiring with the series),
the roll-up of a complete quarter (sums, mean and highest load, most workers), each
quarter rolled once by any number of callers, the backfill bounded per call, the 7-day
expiry, and refusals that change nothing. Clocks are shifted with ``offset_ms``: writes
land in a quarter that is already complete by Redis's own clock.
"""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.errors import CorruptQueue, ValidationError
from orchestrator.metrics_records import (
    BACKFILL_QUARTERS,
    MINUTE_MS,
    QUARTER_MS,
    ROLLUP_TTL_MS,
    SERIES_FIELDS,
    SERIES_TTL_MS,
)
from orchestrator.script_calls import Call, run
from tests.lua.test_scripts import ERROR, Q, server_ms, spec
from tests.redis_server import snapshot


@pytest.fixture
def q(r: Any) -> Q:
    return Q(r)


SNAPSHOT = dict.fromkeys(SERIES_FIELDS, "0")  # the stats counters when the minute's first call came


def register(q: Q, worker: str, running: int, concurrency: int, deadline_ms: int) -> None:
    q.r.zadd(q.keys.workers, {worker: deadline_ms})
    q.r.hset(q.keys.worker(worker), mapping={"running": running, "concurrency": concurrency})


def shift_into_quarter(r: Any, quarters_back: int, minute: int) -> int:
    """The offset that puts Redis's clock ``minute`` minutes into the quarter ``quarters_back``
    before the current one (complete by the real clock)."""
    now = server_ms(r)
    target = now - now % QUARTER_MS - quarters_back * QUARTER_MS + minute * MINUTE_MS + 1_000
    return target - now


def fields(r: Any, key: str) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in r.hgetall(key).items()}


def test_the_sample_counts_live_workers_only_once_a_minute_and_expires_with_the_series(q: Q) -> None:
    now = server_ms(q.r)
    register(q, "w1", 3, 4, now + 60_000)
    register(q, "w2", 1, 4, now + 60_000)
    register(q, "dead", 4, 4, now - 1_000)  # its deadline passed: not live
    offset = MINUTE_MS - now % MINUTE_MS + 500 if now % MINUTE_MS > 50_000 else 0  # not across a minute's end
    first = run(q.r, q.at(offset).rollup())
    minute = first.now_ms - first.now_ms % MINUTE_MS
    key = q.keys.series(minute)
    assert first.sampled
    assert fields(q.r, key) == {"load": "0.5000", "workers": "2"} | SNAPSHOT  # and the minute's snapshot
    q.r.hset(q.keys.worker("w1"), "running", 0)
    again = run(q.r, q.at(offset).rollup())  # another scheduler, the same minute
    assert not again.sampled
    assert fields(q.r, key)["load"] == "0.5000"
    expires = q.r.pexpiretime(key)
    assert expires == minute - offset + SERIES_TTL_MS


def test_no_live_worker_samples_zero(q: Q) -> None:
    reply = run(q.r, q.at().rollup())
    key = q.keys.series(reply.now_ms - reply.now_ms % MINUTE_MS)
    assert fields(q.r, key) == {"load": "0.0000", "workers": "0"} | SNAPSHOT


def test_a_complete_quarter_is_rolled_up_once_with_sums_and_load(q: Q) -> None:
    now = server_ms(q.r)
    register(q, "w1", 1, 4, now + 3_600_000)
    for minute, running in ((2, 1), (7, 3)):
        at = q.at(shift_into_quarter(q.r, 1, minute))
        q.r.hset(q.keys.worker("w1"), "running", running)
        run(q.r, at.enqueue([spec_of(i) for i in range(3)], max_payload=1 << 20))
        assert run(q.r, at.rollup()).sampled
    leases = run(q.r, q.at(shift_into_quarter(q.r, 1, 9)).claim("w1", 2, 600_000))
    run(q.r, q.at(shift_into_quarter(q.r, 1, 10)).complete(leases[0].task_id, leases[0].token, b"1", 60_000))
    run(q.r, q.at(shift_into_quarter(q.r, 1, 10)).fail(leases[1].task_id, leases[1].token, ERROR))
    total = 0
    while True:  # the samples' calls rolled up the quarters before them (in batches of 4): the rest now
        reply = run(q.r, q.at().rollup(4))
        total += reply.rolled
        if not reply.more:
            break
    assert total >= 1
    quarter = reply.now_ms - reply.now_ms % QUARTER_MS - QUARTER_MS
    rollups = sorted(k.decode() for k in q.r.scan_iter(match=q.keys.rollup("*")))  # type: ignore[arg-type]
    assert rollups == [q.keys.rollup(quarter)]  # idle quarters write nothing
    got = fields(q.r, q.keys.rollup(quarter))
    runtime = got.pop("runtime_ms")
    assert got == {
        "enqueued": "6", "succeeded": "1", "retried": "1", "runs": "2",
        "load": "0.5000", "load_max": "0.7500", "workers": "1", "samples": "2",
    }
    assert 60_000 <= int(runtime) <= 2 * 60_000 + 10_000
    assert q.r.pexpiretime(q.keys.rollup(quarter)) == quarter + QUARTER_MS + ROLLUP_TTL_MS
    assert int(q.r.get(q.keys.rolled)) == quarter
    assert q.r.pttl(q.keys.rolled) > 0
    before = snapshot(q.r)
    second = run(q.r, q.at().rollup(4))  # another scheduler: nothing left to roll up
    assert (second.rolled, second.more) == (0, False)
    after = snapshot(q.r)
    assert {k: v for k, v in after.items() if b":series:" not in k} == {
        k: v for k, v in before.items() if b":series:" not in k
    }


def test_the_next_quarter_is_rolled_up_once_it_is_complete(q: Q) -> None:
    two_back = shift_into_quarter(q.r, 2, 0)
    run(q.r, q.at(two_back).enqueue([spec_of(1)], max_payload=1 << 20))
    while run(q.r, q.at(two_back).rollup(BACKFILL_QUARTERS)).more:
        pass
    assert not list(q.r.scan_iter(match=q.keys.rollup("*")))  # its quarter is the current one there
    one_back = shift_into_quarter(q.r, 1, 3)
    reply = run(q.r, q.at(one_back).rollup())
    assert reply.rolled == 1
    quarter = reply.now_ms - reply.now_ms % QUARTER_MS - QUARTER_MS
    assert fields(q.r, q.keys.rollup(quarter))["enqueued"] == "1"
    assert run(q.r, q.at(one_back).rollup()).rolled == 0
    assert run(q.r, q.at().rollup()).rolled == 1  # and the one after, by the real clock


@pytest.mark.parametrize("limit", ["0", "-1", str(BACKFILL_QUARTERS + 1), "x", ""])
def test_a_bad_limit_is_refused_and_changes_nothing(q: Q, limit: str) -> None:
    good = q.at().rollup()
    before = snapshot(q.r)
    with pytest.raises(ValidationError, match="limit"):
        run(q.r, Call(good.script, good.keys, (*good.args[:3], limit), good.decode))
    assert snapshot(q.r) == before


@pytest.mark.parametrize("which", ["workers", "rolled", "stats", "counter"])
def test_keys_of_another_type_are_refused_and_change_nothing(q: Q, which: str) -> None:
    if which == "workers":
        q.r.set(q.keys.workers, "x")
    elif which == "rolled":
        q.r.hset(q.keys.rolled, "a", "b")
    elif which == "stats":
        q.r.set(q.keys.stats, "x")
    else:
        q.r.hset(q.keys.stats, "enqueued", "many")
    before = snapshot(q.r)
    with pytest.raises(CorruptQueue):
        run(q.r, q.at().rollup())
    assert snapshot(q.r) == before


def test_a_first_call_backfills_the_series_kept_in_batches(q: Q) -> None:
    replies = [run(q.r, q.at().rollup(4)) for _ in range(BACKFILL_QUARTERS // 4 + 1)]
    assert [r.rolled for r in replies] == [4] * (BACKFILL_QUARTERS // 4) + [0]
    assert [r.more for r in replies] == [True] * (BACKFILL_QUARTERS // 4 - 1) + [False, False]


def test_a_series_or_rollup_hash_of_another_type_is_skipped(q: Q) -> None:
    reply = run(q.r, q.at().rollup())
    q.r.delete(q.keys.rolled)
    minute = reply.now_ms - reply.now_ms % MINUTE_MS
    q.r.delete(q.keys.series(minute))
    q.r.set(q.keys.series(minute), "spoiled")
    quarter = reply.now_ms - reply.now_ms % QUARTER_MS - QUARTER_MS
    q.r.set(q.keys.rollup(quarter), "spoiled")
    run(q.r, q.at(shift_into_quarter(q.r, 1, 1)).enqueue([spec_of(1)], max_payload=1 << 20))
    while (again := run(q.r, q.at().rollup(BACKFILL_QUARTERS))).more:
        pass
    assert not again.sampled
    assert q.r.get(q.keys.series(minute)) == b"spoiled"
    assert q.r.get(q.keys.rollup(quarter)) == b"spoiled"


def spec_of(i: int) -> Any:
    return spec(max_retries=1)
