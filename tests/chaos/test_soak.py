"""The chaos soak: a short real run in the suite, and its checker tried on forged evidence.

The short run starts real workers, schedulers and producers on a private Redis and does
every kind of fault at least once (kill -9 of a worker and of a scheduler, a worker frozen
past its lease, Redis killed and restarted on its AOF), then asserts every invariant held.
The checker tests feed ``soak_check`` small hand-made histories, so a checker that passes
everything cannot hide behind a green soak.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from orchestrator.cli.commands import EXIT_UNREACHABLE
from tests.chaos.soak import ACTIONS, SoakConfig, run_soak
from tests.chaos.soak_check import Report, check
from tests.chaos.soak_evidence import Collected, Event, load, save
from tests.chaos.soak_fleet import Fleet, Member

# ---------------------------------------------------------------- forged evidence

Q = "q"


def ev(ms: int, kind: str, task: str = "t1", **fields: Any) -> Event:
    return Event(Q, ms, 0, {"event": kind, "task": task, **{k: str(v) for k, v in fields.items()}})


def entry(ms: float, event: str, token: str, attempt: int, worker: str, task: str = "t1") -> dict[str, Any]:
    return {"task": task, "queue": Q, "token": token, "attempt": attempt, "worker": worker, "tag": f"tag-{task}",
            "via": "context", "event": event, "pid": 1, "nonce": f"{task}{token}{event}", "t": round(ms * 1000)}


def record(task: str = "t1", *, state: str = "SUCCESS", token: str = "1", attempts: int = 1, max_retries: int = 1,
           completed: int = 1101, created: int = 900, key: str = "", **extra: str) -> dict[str, str]:
    out = {"id": task, "queue": Q, "state": state, "token": token, "attempts": str(attempts),
           "max_retries": str(max_retries), "args": orjson.dumps([f"tag-{task}", 0.1, 0.0]).decode(),
           "created_at": str(created), "completed_at": str(completed), "key": key}
    if state == "SUCCESS":
        out["result"] = orjson.dumps({"token": token}).decode()
    return {**out, **extra}


def request(task: str = "t1", *, key: str | None = None, unique_key: str | None = None, created: bool = True,
            tag: str = "") -> dict[str, Any]:
    return {"tag": tag or f"tag-{task}", "queue": Q, "key": key, "unique_key": unique_key, "ack": True, "id": task,
            "created": created}


def evidence(records: list[dict[str, str]], events: list[Event], entries: list[dict[str, Any]],
             requests: list[dict[str, Any]] | None = None) -> Collected:
    index = {"SUCCESS": "done", "FAILED": "failed"}
    indexes: dict[str, dict[str, float]] = {n: {} for n in ("pending", "scheduled", "running", "failed", "done")}
    for r in records:
        if r["state"] in index:
            indexes[index[r["state"]]][r["id"]] = 0.0
    return Collected(
        requests=requests if requests is not None else [request(r["id"]) for r in records],
        records={r["id"]: r for r in records}, entries=entries, events=events, indexes={Q: indexes},
        now_ms=100_000,
    )


def failing(report: Report) -> dict[str, list[str]]:
    return {i.title: i.violations for i in report.invariants if not i.ok}


def clean_story() -> Collected:
    """Claimed, ran, succeeded: nothing to say."""
    return evidence(
        [record()],
        [ev(900, "enqueued"), ev(1000, "claimed", attempt=1, worker="w1"), ev(1101, "succeeded", worker="w1")],
        [entry(1000.5, "start", "1", 1, "w1"), entry(1100, "end", "1", 1, "w1")],
    )


def zombie_story(winner: str = "2") -> Collected:
    """w1 froze past its lease and was reaped; w2 ran attempt 2 and succeeded; w1's run ended
    later still (a zombie): allowed, since its lease had ended before w2 started."""
    return evidence(
        [record(token=winner, attempts=2, completed=4601)],
        [ev(1000, "claimed", attempt=1, worker="w1"), ev(4000, "reaped", worker="w1", state="RETRYING"),
         ev(4500, "claimed", attempt=2, worker="w2"), ev(4601, "succeeded", worker="w2")],
        [entry(1000.5, "start", "1", 1, "w1"), entry(4500.5, "start", "2", 2, "w2"),
         entry(4600, "end", "2", 2, "w2"), entry(9000, "end", "1", 1, "w1")],
    )


def test_checker_passes_a_clean_history() -> None:
    report = check(clean_story())
    assert report.passed, failing(report)
    assert report.counts["runs"] == 1


def test_checker_allows_and_counts_a_zombie_whose_lease_had_expired() -> None:
    report = check(zombie_story())
    assert report.passed, failing(report)
    assert report.counts["zombie overlaps (earlier lease reaped)"] == 1


def test_checker_catches_a_success_from_a_stale_token() -> None:
    bad = failing(check(zombie_story(winner="1")))
    assert list(bad) == ["SUCCESS results come from the attempt whose token was current"]


def test_checker_catches_two_leases_out_at_once() -> None:
    data = zombie_story()
    data.events = [e for e in data.events if e.kind != "reaped"]  # w2 claimed while w1's lease was out
    bad = failing(check(data))
    overlap = bad["no two attempts of one task ran while both held a valid lease"]
    assert any("still out" in v for v in overlap) and any("both held a valid lease" in v for v in overlap)


def test_checker_catches_too_many_attempts_and_a_failure_without_reason() -> None:
    data = zombie_story()
    data.records["t1"].update(attempts="2", max_retries="0")
    data.records["t2"] = record("t2", state="FAILED", attempts=0)
    data.requests.append(request("t2"))
    data.indexes[Q]["failed"]["t2"] = 0.0
    data.events.append(ev(5000, "failed", task="t2"))
    violations = failing(check(data))["attempts <= max_retries + 1; failed tasks carry the reason"]
    assert len(violations) == 2
    assert "max_retries + 1 = 1" in violations[0] and "no reason" in violations[1]


def test_checker_catches_a_lost_task_and_an_unfinished_one() -> None:
    data = clean_story()
    data.requests.append(request("gone"))
    data.records["t1"]["state"] = "RUNNING"
    data.indexes[Q]["done"].clear()
    data.indexes[Q]["running"]["t1"] = 99_000.0
    violations = failing(check(data))["every enqueued task is final; none running without a live lease"]
    assert any("gone" in v and "not in Redis" in v for v in violations)
    assert any("t1 is RUNNING in running" in v for v in violations)
    assert any("expired lease" in v for v in violations)


def test_checker_catches_two_unfinished_tasks_with_one_unique_key() -> None:
    first = clean_story()
    first.records["t1"]["unique_key"] = "k"
    second = record("t2", unique_key="k", created=1050, completed=1300)  # created while t1 ran
    first.records["t2"] = second
    first.indexes[Q]["done"]["t2"] = 0.0
    first.requests = [request("t1", unique_key="k"), request("t2", unique_key="k"),
                      request("t1", unique_key="k", created=False, tag="x")]
    first.events += [ev(1100, "claimed", task="t2", attempt=1, worker="w1"), ev(1300, "succeeded", task="t2")]
    first.entries += [entry(1100.5, "start", "2", 1, "w1", "t2"), entry(1200, "end", "2", 1, "w1", "t2")]
    second["token"] = "2"
    second["result"] = orjson.dumps({"token": "2"}).decode()
    violations = failing(check(first))["idempotency keys gave one task each"]
    assert len(violations) == 1 and "t2 created at 1050 while task t1 was unfinished" in violations[0]


def test_checker_catches_two_records_with_one_key_even_one_after_the_other() -> None:
    story = clean_story()
    story.records["t1"]["key"] = "k"
    second = record("t2", key="k", created=1200, completed=1300, token="2")  # after t1 ended: still wrong
    second["result"] = orjson.dumps({"token": "2"}).decode()
    story.records["t2"] = second
    story.indexes[Q]["done"]["t2"] = 0.0
    story.requests = [request("t1", key="k"), request("t2", key="k")]
    story.events += [ev(1210, "claimed", task="t2", attempt=1, worker="w1"), ev(1300, "succeeded", task="t2")]
    story.entries += [entry(1210.5, "start", "2", 1, "w1", "t2"), entry(1250, "end", "2", 1, "w1", "t2")]
    violations = failing(check(story))["idempotency keys gave one task each"]
    assert violations == [f"key k of {Q}: task t2 created while the record of task t1 exists"]


def test_evidence_survives_a_round_trip(tmp_path: Path) -> None:
    data = zombie_story()
    save(data, tmp_path / "evidence.json")
    assert load(tmp_path / "evidence.json") == data


# ------------------------------------------------------------------- the fleet


class StubProc:
    def __init__(self, name: str, returncode: int, log: str) -> None:
        self.name, self.returncode, self._log = name, returncode, log

    def log(self) -> str:
        return self._log

    def tail(self, lines: int) -> str:
        return self._log


def test_a_process_refused_at_start_while_redis_was_down_is_no_finding(tmp_path: Path) -> None:
    fleet = Fleet("redis://127.0.0.1:1/0", tmp_path, lease=3.0, heartbeat=0.5, rate=1.0)
    unreachable = "Error: cannot reach Redis at redis://127.0.0.1:1/0: Connection refused."
    fleet.members = [
        Member(StubProc("w-thread-1", EXIT_UNREACHABLE, unreachable), "worker", "thread"),  # type: ignore[arg-type]
        Member(StubProc("w-thread-2", EXIT_UNREACHABLE, f"[Worker w-thread-2] Started: ...\n{unreachable}"),
               "worker", "thread"),  # type: ignore[arg-type]
        Member(StubProc("s-1", 1, "Traceback ..."), "scheduler"),  # type: ignore[arg-type]
    ]
    fleet.replace_exited(restart=False)
    assert fleet.refused == ["w-thread-1"]
    assert [entry.split()[0] for entry in fleet.unexpected] == ["w-thread-2", "s-1"], "a serving one exiting is"


# ------------------------------------------------------------------- the real run


@pytest.mark.slow
@pytest.mark.timeout(600)  # ~60 s when idle; generous for a loaded 2-core machine
def test_short_chaos_soak_holds_every_invariant(tmp_path: Path) -> None:
    result = run_soak(SoakConfig.short(workdir=tmp_path))
    print(result.render())
    assert result.passed, result.render()
    for kind in (*ACTIONS, "redis_restart"):
        assert result.actions[kind] >= 1, f"no {kind} happened\n{result.render()}"
    assert result.actions["redis_restart"] == 1
    counts = result.report.counts
    assert counts["state SUCCESS"] > 0 and counts["state FAILED"] > 0 and counts["retried tasks"] > 0, counts
    assert counts["acknowledged existing (key)"] > 0, "no idempotency key was repeated while its task ran"
    assert counts["reaped"] > 0, "no lease expired: the kills and freezes missed every running task"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_short_chaos_soak_on_a_cluster_survives_a_master_killed(tmp_path: Path) -> None:
    """kill -9 the master of the busiest queue while producers and workers run: its replica
    takes over, work goes on, every invariant holds, tokens included (worker and scheduler
    faults as well). Durability replicated: an acknowledged enqueue or outcome reached a replica."""
    result = run_soak(SoakConfig.short(workdir=tmp_path, cluster=True, seconds=30.0, durability="replicated"))
    print(result.render())
    assert result.passed, result.render()
    assert result.actions["master_failover"] == 1
    counts = result.report.counts
    assert counts["state SUCCESS"] > 0 and counts["retried tasks"] > 0, counts
