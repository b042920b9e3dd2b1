"""The metrics the scripts write: counters per label, histogram buckets, per-minute series.

Each transition's counts in ``orch:{Q}:metrics`` (field names: metrics_records.py), the
cap on task-name labels, the series hashes and their expiry, the one counter a refused
outcome changes (``late``), aggregation per call (one HINCRBY per distinct field, counted
with INFO commandstats), and that a spoiled metrics key never stops a transition.
"""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.errors import LeaseLost
from orchestrator.metrics_records import (
    MAX_NAMES,
    MINUTE_MS,
    OTHER,
    SERIES_TTL_MS,
    SeriesPoint,
    decode_metrics,
    decode_series,
    minutes,
)
from orchestrator.models import TaskState
from orchestrator.script_calls import run
from tests.lua.limits import NO_COMMANDSTATS, ONE_SERVER_STATS
from tests.lua.test_scripts import ERROR, MAX_PAYLOAD, Q, server_ms, spec

S = TaskState
NAME = "tests.jobs:job"


@pytest.fixture
def q(r: Any) -> Q:
    return Q(r)


def metrics(q: Q) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in q.r.hgetall(q.keys.metrics).items()}


def series(q: Q) -> dict[str, dict[str, int]]:
    """Every series snapshot, by minute (as text)."""
    out = {}
    for key in q.r.scan_iter(match=q.keys.series("*"), count=1000):  # type: ignore[arg-type]
        minute = key.decode().rsplit(":", 1)[1]
        out[minute] = {f.decode(): int(v) for f, v in q.r.hgetall(key).items()}
    return out


def finished(q: Q) -> dict[str, dict[str, int]]:
    return decode_metrics("q", 0, q.r.hgetall(q.keys.metrics), None).finished


def points(q: Q, offset_ms: int = 0) -> list[SeriesPoint]:
    """The series of the last 5 minutes, as Queue.series reads them (on the shifted clock)."""
    starts = minutes(server_ms(q.r) + offset_ms, 5)
    return decode_series(starts, [q.r.hgetall(q.keys.series(m)) for m in starts], q.r.hgetall(q.keys.stats))


def totals(q: Q, offset_ms: int = 0) -> dict[str, int]:
    summed: dict[str, int] = {}
    for point in points(q, offset_ms):
        for field, n in point.model_dump(exclude={"minute"}).items():
            if n:
                summed[field] = summed.get(field, 0) + n
    return summed


def calls(r: Any, command: str) -> int:
    """How many times ``command`` ran since the last CONFIG RESETSTAT (scripts' calls included)."""
    stat = r.info("commandstats").get(f"cmdstat_{command}")
    return int(stat["calls"]) if stat else 0


def test_enqueue_counts_per_name_and_leaves_ready_at_and_run_at_to_created_at(q: Q) -> None:
    now = q.add(2) + q.add(name="other:job")
    [later] = q.add(delay_ms=60_000)
    assert metrics(q) == {f"enqueued:{NAME}": 3, "enqueued:other:job": 1}
    assert q.r.smembers(q.keys.names) == {NAME.encode(), b"other:job"}
    for task_id in now:  # (#18: left out, they read as created_at: claim.lua, metrics_records.ready_time)
        assert q.r.hmget(q.keys.task(task_id), "ready_at", "run_at") == [None, None]
    assert q.r.hget(q.keys.task(later), "ready_at") is None
    assert q.r.hget(q.keys.task(later), "run_at") is not None
    assert totals(q) == {"enqueued": 4}


def test_claim_counts_the_wait_from_ready_in_its_own_buckets(q: Q) -> None:
    q.add(2)
    q.claim(2, offset_ms=40)  # 40 ms later, give or take the test's own time
    m = metrics(q)
    waits = {k: v for k, v in m.items() if k.startswith("wait:")}
    assert sum(waits.values()) == 2
    assert 80 <= m["wait_ms"] < 2 * 30_000  # (a loaded machine may pause the test a while)
    assert all(int(k.split(":")[1]) >= 50 for k in waits), waits


def test_a_delayed_task_waits_from_its_run_at_not_from_its_enqueue(q: Q) -> None:
    q.add(delay_ms=60_000)
    q.run(q.at(60_000).promote(10))
    q.claim(offset_ms=60_000)
    m = metrics(q)
    assert m.get("wait_ms", 0) < 30_000  # not the minute it was delayed by (0 ms: no field)
    assert sum(v for k, v in m.items() if k.startswith("wait:")) == 1


@pytest.mark.parametrize("state", ["SCHEDULED", "RETRYING"])
def test_a_task_promoted_late_waits_from_its_run_at_not_from_its_promotion(q: Q, state: str) -> None:
    """Eligible is when it fell due: the time it then waited for a scheduler (down, or behind)
    is wait, as it is for a pending task waiting for a worker."""
    if state == "SCHEDULED":
        [task_id] = q.add(delay_ms=60_000)
    else:
        [task_id] = q.add(backoff_ms=60_000, max_retries=1)
        [lease] = q.claim()
        q.run(q.at().fail(task_id, lease.token, ERROR))
    run_at = int(q.r.hget(q.keys.task(task_id), "run_at"))
    q.run(q.at(600_000).promote(10))  # due after 1 min, promoted after 10
    assert int(q.r.hget(q.keys.task(task_id), "ready_at")) == run_at
    q.claim(offset_ms=600_000)
    m = metrics(q)
    assert 500_000 <= m["wait_ms"] <= 600_000 + 30_000
    assert m.get("wait:900000") == 1


def test_complete_counts_the_outcome_its_run_time_bucket_and_the_series(q: Q) -> None:
    [task_id] = q.add()
    [lease] = q.claim()
    q.run(q.at(3000).complete(task_id, lease.token, b"1", 0))  # ran 3 s (clock moved)
    m = metrics(q)
    assert m[f"run:5000:succeeded:{NAME}"] == 1
    assert 3000 <= m[f"run_ms:{NAME}"] < 4000
    assert finished(q) == {NAME: {"succeeded": 1}}
    t = totals(q, 3000)
    assert (t["succeeded"], t["runs"], t["enqueued"]) == (1, 1, 1)
    assert t["runtime_ms"] == m[f"run_ms:{NAME}"]


@pytest.mark.parametrize(("mode", "retries", "outcome"), [
    ("retry", 1, "retried"), ("retry", 0, "failed"), ("fatal", 3, "failed"), ("cancelled", 3, "cancelled"),
])
def test_fail_counts_its_outcome_and_the_run(q: Q, mode: str, retries: int, outcome: str) -> None:
    [task_id] = q.add(max_retries=retries)
    [lease] = q.claim()
    q.run(q.at().fail(task_id, lease.token, ERROR, mode=mode))
    m = metrics(q)
    [timed] = [k for k in m if k.startswith("run:")]
    assert timed.endswith(f":{outcome}:{NAME}")
    assert finished(q) == {NAME: {outcome: 1}}
    t = totals(q)
    assert t.get(outcome, 0) == (0 if outcome == "cancelled" else 1)  # the series has no cancelled
    assert t["runs"] == 1


def test_reap_counts_reaped_and_the_outcome_without_a_run_time(q: Q) -> None:
    q.add(3, max_retries=1)
    q.claim(3, lease_ms=1000)
    reply = q.run(q.at(5000).reap(10))
    assert len(reply.tasks) == 3
    m = metrics(q)
    assert (m["reaped"], m[f"retried:{NAME}"]) == (3, 3)
    assert not any(k.startswith("run") for k in m)
    t = totals(q, 5000)
    assert (t["reaped"], t["retried"]) == (3, 3)


def test_cancel_of_a_waiting_task_counts_cancelled(q: Q) -> None:
    [task_id] = q.add()
    q.run(q.at().cancel(task_id, 0))
    assert metrics(q)[f"cancelled:{NAME}"] == 1


def test_a_late_outcome_is_counted_once_and_changes_nothing_else(q: Q) -> None:
    [task_id] = q.add(max_retries=2)
    [old] = q.claim(lease_ms=1000)
    q.run(q.at(5000).reap(10))
    q.fails(LeaseLost, q.at().complete(task_id, old.token, b"1", 0))  # Q.fails: late +1, nothing else
    q.fails(LeaseLost, q.at().fail(task_id, old.token, ERROR))
    assert metrics(q)["late"] == 2


def test_a_resent_outcome_is_not_late(q: Q) -> None:
    """A call resent after its reply was lost finds its own outcome under its token."""
    [a, b] = q.add(2, max_retries=3)
    [la, lb] = q.claim(2)
    q.run(q.at().complete(a, la.token, b"1", 0))
    q.fails(LeaseLost, q.at().complete(a, la.token, b"1", 0), late=0)
    q.run(q.at().fail(b, lb.token, ERROR, seed=1))
    q.fails(LeaseLost, q.at().fail(b, lb.token, ERROR, seed=1), late=0)


def test_names_are_capped_and_the_rest_count_as_other(q: Q) -> None:
    names = [f"job{i}" for i in range(MAX_NAMES + 2)]
    specs = [spec(name=n) for n in names]
    run(q.r, q.at().enqueue(specs, max_payload=MAX_PAYLOAD))
    assert q.r.scard(q.keys.names) == MAX_NAMES
    m = metrics(q)
    assert m[f"enqueued:{OTHER}"] == 2
    assert sum(v for k, v in m.items() if k.startswith("enqueued:")) == MAX_NAMES + 2
    late = [s.id for s in specs[MAX_NAMES:]]
    assert [q.r.hget(q.keys.task(i), "label") for i in late] == [OTHER.encode()] * 2
    assert q.r.hget(q.keys.task(specs[0].id), "label") is None
    # Their outcomes count under the label they were given, even once a name is known.
    leases = q.claim(MAX_NAMES + 2)
    for lease in leases:
        q.run(q.at().complete(lease.task_id, lease.token, b"1", 0))
    done = finished(q)
    assert done[OTHER] == {"succeeded": 2}
    assert done["job0"] == {"succeeded": 1}


def test_series_snapshot_the_counters_once_a_minute_and_expire_after_25_hours(q: Q) -> None:
    q.add(2)
    run(q.r, q.at(MINUTE_MS).enqueue([spec()], max_payload=MAX_PAYLOAD))
    snaps = series(q)
    assert len(snaps) == 2
    first, second = sorted(snaps)
    assert snaps[first] == {f: 0 for f in ("enqueued", "succeeded", "failed", "retried", "reaped", "runs",
                                           "runtime_ms")}
    assert snaps[second]["enqueued"] == 2  # the counters as they stood when that minute began
    for minute in snaps:
        assert int(minute) % MINUTE_MS == 0
        ttl = q.r.pttl(q.keys.series(int(minute)))
        assert SERIES_TTL_MS - 3 * MINUTE_MS < ttl <= SERIES_TTL_MS
    per_minute = [p.enqueued for p in points(q, MINUTE_MS)]
    assert per_minute[-2:] == [2, 1] and sum(per_minute) == 3


@pytest.mark.fakeredis_limit(NO_COMMANDSTATS)
@pytest.mark.cluster_skip(ONE_SERVER_STATS)
def test_a_minute_costs_one_hget_a_call_after_its_snapshot(q: Q) -> None:
    q.add()
    q.r.config_resetstat()
    run(q.r, q.at().enqueue([spec()], max_payload=MAX_PAYLOAD))
    assert (calls(q.r, "pexpireat"), calls(q.r, "hset")) == (0, 1)  # the record only
    assert calls(q.r, "hget") == 2 + 1  # seq and enqueued (enqueue's own), series_minute


@pytest.mark.fakeredis_limit(NO_COMMANDSTATS)
@pytest.mark.cluster_skip(ONE_SERVER_STATS)
@pytest.mark.parametrize("how", ["complete", "fail"])
def test_complete_and_fail_read_the_minute_in_the_stats_hmget_they_make_anyway(q: Q, how: str) -> None:
    [first, task_id] = q.add(2)
    leases = {lease.task_id: lease for lease in q.claim(2)}
    run(q.r, q.at().complete(first, leases[first].token, b"1", 0))  # the minute's snapshot
    q.r.config_resetstat()
    if how == "complete":
        run(q.r, q.at().complete(task_id, leases[task_id].token, b"1", 0))
    else:
        run(q.r, q.at().fail(task_id, leases[task_id].token, ERROR))
    assert (calls(q.r, "hget"), calls(q.r, "hmget")) == (0, 2)  # stats (series_minute too), the record


def test_series_read_zero_for_idle_minutes_and_never_below_zero(q: Q) -> None:
    q.add(3)
    run(q.r, q.at(MINUTE_MS).enqueue([spec()], max_payload=MAX_PAYLOAD))  # snapshot: 3 enqueued
    q.r.hset(q.keys.stats, "enqueued", 1)  # set back by hand
    assert [p.enqueued for p in points(q, MINUTE_MS)] == [0, 0, 0, 3, 0]


@pytest.mark.fakeredis_limit(NO_COMMANDSTATS)
@pytest.mark.cluster_skip(ONE_SERVER_STATS)
def test_claim_and_enqueue_write_one_hincrby_per_distinct_field(q: Q) -> None:
    specs = [spec(name=f"job{i % 3}") for i in range(300)]
    q.r.config_resetstat()
    run(q.r, q.at().enqueue(specs, max_payload=MAX_PAYLOAD))
    # seq, enqueued (stats) + 3 names (metrics)
    assert calls(q.r, "hincrby") == 2 + 3
    assert calls(q.r, "sismember") == 3
    q.r.config_resetstat()
    q.claim(300)
    buckets = sum(1 for k in metrics(q) if k.startswith("wait:"))
    assert calls(q.r, "hincrby") == 1 + buckets + 1  # started (stats), the buckets, wait_ms


@pytest.mark.fakeredis_limit(NO_COMMANDSTATS)
@pytest.mark.cluster_skip(ONE_SERVER_STATS)
def test_a_known_name_costs_one_hincrby_and_a_name_past_the_cap_leaves_no_field(q: Q) -> None:
    q.add()
    q.r.config_resetstat()
    run(q.r, q.at().enqueue([spec()], max_payload=MAX_PAYLOAD))
    assert (calls(q.r, "sismember"), calls(q.r, "scard"), calls(q.r, "hincrby")) == (0, 0, 1 + 2)  # + seq, enqueued
    q.r.sadd(q.keys.names, *[f"n{i}" for i in range(MAX_NAMES)])
    run(q.r, q.at().enqueue([spec(name="late:comer")], max_payload=MAX_PAYLOAD))
    m = metrics(q)
    assert "enqueued:late:comer" not in m and m[f"enqueued:{OTHER}"] == 1


@pytest.mark.fakeredis_limit(NO_COMMANDSTATS)
@pytest.mark.cluster_skip(ONE_SERVER_STATS)
def test_reap_writes_its_metrics_once_per_call(q: Q) -> None:
    q.add(20, max_retries=1)
    q.claim(20, lease_ms=1000)
    q.r.config_resetstat()
    q.run(q.at(5000).reap(100))
    # stats: retried and reaped per task (as before); metrics: retried:<name>, reaped
    assert calls(q.r, "hincrby") == 2 * 20 + 2


@pytest.mark.parametrize("spoil", ["metrics", "names", "field"])
def test_spoiled_metrics_never_stop_a_transition(q: Q, spoil: str) -> None:
    if spoil == "field":
        q.r.hset(q.keys.metrics, f"enqueued:{NAME}", "not a number")
    else:
        q.r.set(getattr(q.keys, spoil), "x")
    [task_id] = q.add()
    [lease] = q.claim()
    q.run(q.at().complete(task_id, lease.token, b"1", 0))
    assert q.state(task_id) is S.SUCCESS
    if spoil == "field":
        assert q.r.hget(q.keys.metrics, f"enqueued:{NAME}") == b"not a number"
        assert finished(q)[NAME] == {"succeeded": 1}
    if spoil == "names":  # no label could be admitted: it counts as other
        assert q.r.hget(q.keys.task(task_id), "label") == OTHER.encode()

