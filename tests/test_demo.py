"""``orch demo``: a shortened real run (private redis-server, real processes, one SIGKILL),
the pure story/summary helpers, and ``scripts/demo`` (the Docker files: ``test_packaging``).
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import redis

from orchestrator.demo.reads import delete_prefix
from orchestrator.demo.run import run_demo
from orchestrator.demo.story import Event, Story, percentile, plan_tasks, plan_waves
from orchestrator.demo.summary import Kill, Outcome, summary_lines
from orchestrator.errors import ConfigurationError

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------- real run


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_demo_recovers_the_killed_workers_tasks_and_loses_none() -> None:
    out = io.StringIO()
    code = run_demo(None, workers=3, tasks=20, kill=True, seed=11, duration=40, stream=out)
    text = out.getvalue()

    assert code == 0, text
    port = re.search(r"private redis-server on 127\.0\.0\.1:(\d+)", text)
    assert port is not None and int(port[1]) != 6379, text
    assert "no task lost   OK: all 20 tasks are SUCCESS, FAILED or CANCELLED" in text

    killed = re.search(r"\[Demo\] Killed worker (w-\d) \(pid \d+\) with SIGKILL", text)
    assert killed is not None, text
    recovered = re.search(rf"recovered\s+(\d+) of (\d+) tasks requeued from {killed[1]}", text)
    assert recovered is not None, text
    assert int(recovered[1]) == int(recovered[2]) >= 1, text
    assert f"[Monitor] Worker {killed[1]} unresponsive" in text
    assert "[Metrics] " in text and "[Scheduler] Promoted task" in text

    # Every process it started is gone, and so is its Redis.
    start_line = next(line for line in text.splitlines() if "[Demo] Started" in line)
    pids = [int(p) for p in re.findall(r"pid (\d+)", start_line)]
    assert len(pids) == 4
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=int(port[1]), socket_connect_timeout=1).ping()


def test_without_redis_server_the_demo_says_how_to_get_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("orchestrator.redis_local.shutil.which", lambda name: None)
    with pytest.raises(ConfigurationError, match="redis-server not found: install Redis"):
        run_demo(None, tasks=3, stream=io.StringIO())


# ------------------------------------------------------------------------------- plan


def test_the_plan_is_seeded_and_spread_over_waves() -> None:
    assert plan_tasks(60, 7) == plan_tasks(60, 7) != plan_tasks(60, 8)
    names = [t.name for t in plan_tasks(60, 7)]
    assert names.count("demo:doomed") == 3 and names.count("demo:flaky") == 7
    assert {t.priority for t in plan_tasks(60, 7)} <= set(range(10))
    waves = plan_waves(60)
    assert waves[0] == (0.0, 24) and sum(n for _, n in waves) == 60
    assert [at for at, _ in waves] == sorted(at for at, _ in waves)
    assert plan_waves(1) == [(0.0, 1)]


def test_delete_prefix_refuses_pattern_like_prefixes() -> None:
    for prefix in ("", "orch*", "a?b", "x[1]"):
        with pytest.raises(ValueError):
            delete_prefix(redis.Redis(port=1), prefix)


# ------------------------------------------------------------------------------ story


def ev(ms: int, seq: int = 0, **fields: object) -> Event:
    return Event(ms, seq, {k: str(v) for k, v in fields.items()})


def told(story: Story, *events: Event) -> list[str]:
    return [re.sub(r"^ *\d+\.\d\ds ", "", line) for line in story.lines(list(events))]


def test_story_numbers_tasks_and_tells_a_lost_worker_before_its_reaped_leases() -> None:
    story = Story(t0_ms=1000)
    story.add_tasks(["a", "b", "c"])
    enqueued = [ev(1000, i, event="enqueued", task=t, name="demo:work", priority=p) for i, (t, p) in
                enumerate([("a", 1), ("b", 5), ("c", 3)])]
    assert story.lines(enqueued) == ["  0.00s [Producer] Enqueued tasks 1-3 (priorities 1-5: 3 demo:work)"]
    assert told(
        story,
        ev(1010, event="claimed", task="a", name="demo:work", priority=1, worker="w-3", attempt=1),
        ev(1010, 1, event="claimed", task="c", name="demo:work", priority=3, worker="w-3", attempt=1),
        ev(1020, event="claimed", task="b", name="demo:work", priority=5, worker="w-1", attempt=1),
        ev(1230, event="succeeded", task="b", name="demo:work", worker="w-1", runtime_ms=210),
    ) == [
        "[Worker w-3] Claimed task 1 (priority 1)",
        "[Worker w-3] Claimed task 3 (priority 3)",
        "[Worker w-1] Claimed task 2 (priority 5)",
        "[Worker w-1] Task 2 succeeded in 210 ms",
    ]
    # The reap script writes reaped events, then worker_lost, in one call (one ms).
    assert told(
        story,
        ev(3000, 0, event="reaped", task="a", name="demo:work", worker="w-3", attempt=1, state="RETRYING"),
        ev(3000, 1, event="worker_lost", worker="w-3", last_seen=900),
        ev(3200, 0, event="reaped", task="c", name="demo:work", worker="w-3", attempt=1, state="RETRYING"),
        ev(3400, 0, event="promoted", task="a", **{"from": "RETRYING"}),
    ) == [
        "[Monitor] Worker w-3 unresponsive (silent 2.1 s), requeued 2 tasks",
        "[Monitor] Task 1 requeued from w-3 for retry (lease expired on attempt 1)",
        "[Monitor] Task 3 requeued from w-3 for retry (lease expired on attempt 1)",
        "[Scheduler] Promoted task 1 for retry",
    ]
    assert story.metrics(3, 0.63) == "[Metrics] 1/3 done · avg load 63% · success 100% · avg run 210 ms"
    assert story.retries == 2 and story.workers["w-3"].reaped == 2


def test_story_tells_failures_with_their_error_and_retry_delay() -> None:
    story = Story(t0_ms=0)
    story.add_tasks(["x"])
    error = json.dumps({"type": "ValueError", "message": "simulated permanent error", "traceback": "..."})
    assert told(
        story,
        ev(100, event="claimed", task="x", name="demo:doomed", priority=0, worker="w-1", attempt=1),
        ev(200, event="retrying", task="x", name="demo:doomed", worker="w-1", attempt=1, run_at=400, error=error),
        ev(500, event="claimed", task="x", name="demo:doomed", priority=0, worker="w-2", attempt=2),
        ev(600, event="failed", task="x", name="demo:doomed", worker="w-2", attempt=2, run_at="", error=error),
    ) == [
        "[Worker w-1] Claimed task 1 (priority 0)",
        "[Worker w-1] Task 1 (demo:doomed) failed on attempt 1: ValueError: simulated permanent error; retry in 0.2 s",
        "[Worker w-2] Claimed task 1 (priority 0, attempt 2)",
        "[Worker w-2] Task 1 (demo:doomed) FAILED after 2 attempts: ValueError: simulated permanent error"
        " -> dead-letter",
    ]
    assert story.done == 1 and story.metrics(1, None).startswith("[Metrics] 1/1 done · avg load - · success 0%")


def test_summary_checks_every_task_and_counts_the_recovered_ones() -> None:
    story = Story(t0_ms=0)
    story.add_tasks(["a", "b", "c"])
    story.lines([
        ev(10, event="claimed", task="a", name="demo:work", priority=1, worker="w-2", attempt=1),
        ev(10, 1, event="claimed", task="b", name="demo:work", priority=1, worker="w-2", attempt=1),
        ev(2000, event="reaped", task="a", name="demo:work", worker="w-2", attempt=1, state="RETRYING"),
        ev(2000, 1, event="reaped", task="b", name="demo:work", worker="w-2", attempt=1, state="RETRYING"),
    ])
    kill = Kill("w-2", 4242, 500, running=2)
    good = Outcome({"a": "SUCCESS", "b": "FAILED", "c": "CANCELLED"})
    text = "\n".join(summary_lines(story, good, ["w-1", "w-2"], kill, planned=3, seed=1, elapsed=3.0))
    assert "no task lost   OK: all 3 tasks are SUCCESS, FAILED or CANCELLED" in text
    assert "recovered      2 of 2 tasks requeued from w-2" in text
    assert re.search(r"w-2 +2 +0 +0 +2 +- +killed", text)

    bad = Outcome({"a": "SUCCESS", "b": "RETRYING", "c": None})
    assert not bad.ok
    text = "\n".join(summary_lines(story, bad, ["w-1", "w-2"], kill, planned=4, seed=1, elapsed=3.0))
    assert "NOT OK: 2 tasks not in a final state, 1 of them missing (task 2 RETRYING, task 3 missing)" in text
    assert "3 of 4 enqueued (time cap)" in text
    assert "1 of 2 tasks requeued from w-2" in text


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([300, 100, 200], 50) == 200
    assert percentile(list(range(1, 101)), 95) == 95


# ---------------------------------------------------------------------------- scripts/demo


@pytest.mark.slow  # it runs scripts/setup first, which reinstalls when pyproject.toml changed
def test_scripts_demo_runs_orch_demo_with_its_arguments(tmp_path: Path) -> None:
    # From another directory, as a user would: it finds the project and passes its arguments on.
    done = subprocess.run([ROOT / "scripts" / "demo", "--help"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Usage: orch demo [OPTIONS]" in done.stdout.splitlines(), done.stdout
