"""The ``orch`` command line, on the private redis-server: CliRunner, plus real processes.

States a command needs (running, failed, succeeded) are made with the transitions
themselves (claim / fail / complete), the way a worker would.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import types
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from click.testing import CliRunner, Result

from orchestrator import Orchestrator, SchedulerSettings, Settings, TaskState, WorkerSettings
from orchestrator import queues as queues_module
from orchestrator.cli import orch
from orchestrator.cli.views import iso
from orchestrator.ids import uuid_hex
from orchestrator.reading import redis_time_ms
from orchestrator.redis_local import LocalRedis, free_port
from orchestrator.script_calls import run
from orchestrator.transitions import Lease

ORCH = Path(sys.executable).with_name("orch")
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
Invoke = Callable[..., Result]


# ---------------------------------------------------------------------------- helpers


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without ORCH_* variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    env.update(extra)
    return env


@pytest.fixture
def invoke(redis_server: LocalRedis, r: redis.Redis) -> Invoke:
    """Run ``orch ARGS`` in-process against the private server (database emptied first)."""
    runner = CliRunner()
    unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("ORCH_")}

    def call(*args: str, env: dict[str, str] | None = None) -> Result:
        return runner.invoke(orch, list(args), env={**unset, "ORCH_REDIS_URL": redis_server.url, **(env or {})})

    return call


def ok(result: Result) -> list[str]:
    """Assert success and return the lines printed on stdout."""
    assert result.exit_code == 0, (result.output, result.exception)
    assert result.stderr == ""
    return result.stdout.splitlines()


def one_line_error(result: Result, *fragments: str, code: int = 2) -> str:
    """Assert the command failed with ``code`` and exactly one ``Error:`` line on stderr."""
    assert result.exit_code == code, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception  # an expected failure, not a crash
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def claim(app: Orchestrator, n: int = 1, queue: str = "default", worker: str = "w1") -> list[Lease]:
    leases = run(app.redis, app._scripts(queue).claim(worker, n, 60_000))
    assert len(leases) == n
    return leases


def fail(app: Orchestrator, lease: Lease, mode: str = "fatal") -> TaskState:
    error = orjson.dumps({"type": "ValueError", "message": "boom", "traceback": "Traceback:\n  line 1\nValueError"})
    return run(app.redis, app._scripts(lease.queue).fail(lease.task_id, lease.token, error, mode=mode)).state


def complete(app: Orchestrator, lease: Lease) -> None:
    run(app.redis, app._scripts(lease.queue).complete(lease.task_id, lease.token, b'"ok"', 0))


def failed_ids(app: Orchestrator, n: int, queue: str = "default") -> list[str]:
    ids = [app.enqueue("pkg.mod:fn", queue=queue).id for _ in range(n)]
    for lease in claim(app, n, queue):
        assert fail(app, lease) is TaskState.FAILED
    return ids


def state_of(r: redis.Redis, task_id: str, queue: str = "default") -> str | None:
    raw = r.hget(f"orch:{{{queue}}}:task:{task_id}", "state")
    return raw.decode() if raw is not None else None


@pytest.fixture
def shifted(redis_server: LocalRedis, r: redis.Redis) -> Iterator[Callable[[int], Orchestrator]]:
    """Orchestrators whose scripts see Redis's clock shifted by the given milliseconds."""
    made: list[Orchestrator] = []

    def make(offset_ms: int) -> Orchestrator:
        made.append(Orchestrator(settings=Settings(redis_url=redis_server.url), clock_offset_ms=offset_ms))
        return made[-1]

    yield make
    for app in made:
        app.close()


# ------------------------------------------------------------------------------- help


@pytest.mark.parametrize("command", [[], *([name] for name in sorted(orch.commands))])
def test_every_command_has_help(invoke: Invoke, command: list[str]) -> None:
    lines = ok(invoke(*command, "--help"))
    assert lines[0].startswith("Usage: orch")


def test_every_command_is_there() -> None:
    assert set(orch.commands) == {
        "enqueue", "status", "tasks", "inspect", "events", "retry", "cancel", "purge", "worker", "scheduler", "reaper",
        "demo", "doctor", "pause", "resume", "run-now", "delete", "serve", "schedules", "queues",
    }


# ---------------------------------------------------------------------------- enqueue


def test_enqueue_prints_the_id_and_writes_the_task(invoke: Invoke, app: Orchestrator) -> None:
    lines = ok(invoke(
        "enqueue", "pkg.mod:fn", "--args", "[1, 2]", "--kwargs", '{"a": "x"}', "-q", "high",
        "--priority", "1", "--max-retries", "7", "--timeout", "2.5",
    ))
    assert len(lines) == 1 and re.fullmatch(r"[0-9A-Za-z]{22}", lines[0])
    task = app.get_task(lines[0], "high")
    assert (task.name, task.args, task.kwargs, task.priority) == ("pkg.mod:fn", [1, 2], {"a": "x"}, 1)
    assert (task.max_retries, task.timeout_ms, task.state) == (7, 2500, TaskState.PENDING)


def test_enqueue_with_delay_schedules_the_task(invoke: Invoke, app: Orchestrator) -> None:
    (task_id,) = ok(invoke("enqueue", "pkg.mod:fn", "--delay", "10"))
    task = app.get_task(task_id)
    assert task.state is TaskState.SCHEDULED
    assert task.run_at is not None and task.created_at is not None
    assert task.run_at - task.created_at == 10_000


def test_enqueue_with_a_key_returns_the_unfinished_task(invoke: Invoke, r: redis.Redis) -> None:
    (first,) = ok(invoke("enqueue", "pkg.mod:fn", "--key", "K"))
    assert ok(invoke("enqueue", "pkg.mod:fn", "--key", "K")) == [f"{first} (existing task)"]
    assert r.zcard("orch:{default}:pending") == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--args", "[1"], "not valid JSON"),
        (["--args", '{"a": 1}'], "must be a JSON list"),
        (["--kwargs", "[1]"], "must be a JSON object"),
        (["--kwargs", "nope"], "not valid JSON"),
        (["-q", "bad queue"], "invalid queue name"),
        (["-q", "x" * 65], "invalid queue name"),
        (["--priority", "10"], "priority must be an integer from 0"),
        (["--priority", "-1"], "priority must be an integer from 0"),
        (["--priority", "high"], "is not a valid integer"),
        (["--max-retries", "1001"], "max_retries"),
        (["--delay", "-1"], "delay must be"),
        (["--bogus"], "No such option"),
    ],
)
def test_enqueue_rejects_bad_input_in_one_line(
    invoke: Invoke, r: redis.Redis, options: list[str], message: str
) -> None:
    one_line_error(invoke("enqueue", "pkg.mod:fn", *options), message)
    assert r.keys("orch:{*}:task:*") == []


def test_enqueue_needs_a_name(invoke: Invoke) -> None:
    one_line_error(invoke("enqueue"), "Missing argument", "orch enqueue --help")


# ----------------------------------------------------------------------------- status


def test_status_without_queues(invoke: Invoke) -> None:
    assert ok(invoke("status")) == ["no queues yet: enqueue a task first"]
    assert json.loads(invoke("status", "--json").stdout) == {"queues": {}}


@pytest.fixture
def busy_queue(app: Orchestrator, shifted: Callable[[int], Orchestrator]) -> None:
    """default: 2 pending, 3 scheduled, 3 running, 2 failed, 1 done; 3 runs of ~5 s; one live
    worker (w1) and one unresponsive (w-old). Queue "other" has one pending task."""
    for _ in range(8):
        app.enqueue("pkg.mod:fn")
    for _ in range(3):
        app.enqueue("pkg.mod:fn", delay=60)
    app.enqueue("pkg.mod:other", queue="other")
    leases = claim(app, 6)
    later = shifted(5000)  # each attempt ends five seconds after it started
    complete(later, leases[0])
    fail(later, leases[1])
    fail(later, leases[2])
    info = {"host": "h1", "pid": "42", "concurrency": "4", "running": "3", "load": "0.75", "version": "0.1.0"}
    held = [(lease.task_id, lease.token) for lease in leases[3:]]
    run(app.redis, app._scripts("default").heartbeat("w1", 30_000, info, held))
    past = shifted(-3_600_000)  # a worker whose heartbeat deadline passed an hour ago
    run(past.redis, past._scripts("default").heartbeat("w-old", 1000, {**info, "host": "h2"}, []))


@pytest.mark.usefixtures("busy_queue")
def test_status_json_counts_totals_and_workers(invoke: Invoke) -> None:
    result = invoke("status", "--json")
    ok(result)
    data = json.loads(result.stdout)
    assert set(data["queues"]) == {"default", "other"}
    default = data["queues"]["default"]
    assert default["counts"] == {
        "pending": 2, "scheduled": 3, "retrying": 0, "running": 3, "success": 1, "failed": 2, "cancelled": 0
    }
    assert default["paused"] is False
    totals = default["totals"]
    assert (totals["enqueued"], totals["started"], totals["succeeded"], totals["failed"]) == (11, 6, 1, 2)
    assert totals["runs"] == 3
    assert 5000 <= default["avg_runtime_ms"] < 6000
    assert default["avg_runtime_ms"] == totals["runtime_ms"] / totals["runs"]
    workers = {w["id"]: w for w in default["workers"]}
    assert workers["w1"]["alive"] is True and workers["w-old"]["alive"] is False
    # numbers as numbers, times as ISO 8601 (issue 10)
    assert (workers["w1"]["load"], workers["w1"]["running"], workers["w1"]["concurrency"]) == (0.75, 3, 4)
    assert workers["w1"]["pid"] == 42 and workers["w1"]["queues"] == ["default"]
    assert ISO.match(workers["w1"]["heartbeat_deadline"]) and ISO.match(default["time"])
    assert data["queues"]["other"]["counts"]["pending"] == 1
    assert data["queues"]["other"]["avg_runtime_ms"] is None


@pytest.mark.usefixtures("busy_queue")
def test_status_text(invoke: Invoke) -> None:
    text = "\n".join(ok(invoke("status")))
    assert "queue default: 2 pending, 3 scheduled, 0 retrying, 3 running, 1 success, 2 failed, 0 cancelled" in text
    assert "queue other: 1 pending, 0 scheduled, 0 retrying, 0 running, 0 success, 0 failed, 0 cancelled" in text
    assert re.search(r"avg run time: 5\d\d\d\.\d ms over 3 runs", text)
    assert "workers: 1 live, 1 unresponsive" in text
    assert re.search(r"w1  load 0.75  running 3/4  host h1 pid 42", text)
    assert re.search(r"w-old  UNRESPONSIVE  load", text)
    assert "runtime_ms / runs" in text  # the legend says what the numbers mean


@pytest.mark.usefixtures("busy_queue")
def test_status_of_chosen_queues(invoke: Invoke) -> None:
    data = json.loads(invoke("status", "-q", "other", "-q", "default", "--json").stdout)
    assert list(data["queues"]) == ["other", "default"]
    one_line_error(invoke("status", "-q", "other", "-q", "never-used"), "no queue 'never-used' (known: default, other)")
    one_line_error(invoke("status", "-q", "no/slash"), "invalid queue name")


# ---------------------------------------------------------------------------- inspect


def test_inspect_finds_the_task_in_any_queue(invoke: Invoke, app: Orchestrator, r: redis.Redis) -> None:
    task_id = app.enqueue("pkg.mod:fn", [1, "two"], {"k": None}, queue="high", priority=2).id
    lines = ok(invoke("inspect", task_id))
    fields = dict(re.split(r"\s+", line, maxsplit=1) for line in lines)
    assert (fields["id"], fields["queue"], fields["state"], fields["priority"]) == (task_id, "high", "PENDING", "2")
    assert fields["args"] == '[1, "two"]' and fields["kwargs"] == '{"k": null}'
    created_ms = int(r.hget(f"orch:{{high}}:task:{task_id}", "created_at") or 0)
    assert fields["created_at"] == iso(created_ms) and ISO.match(fields["created_at"])
    assert fields["started_at"] == "-"


def test_a_task_is_named_by_its_uuid_in_any_form(invoke: Invoke, app: Orchestrator, r: redis.Redis) -> None:
    """#18: ids are 22 characters; the UUID's 32-hex and dashed forms name the same task
    (inspect, handle, cancel), and a task stored under a hex id (enqueued before) is found by it."""
    task_id = app.enqueue("pkg.mod:fn", queue="high").id
    u = uuid.UUID(hex=uuid_hex(task_id))
    assert len(task_id) == 22 and task_id.isalnum()
    for form in (u.hex, str(u), u.hex.upper()):
        fields = dict(re.split(r"\s+", line, maxsplit=1) for line in ok(invoke("inspect", form)))
        assert (fields["id"], fields["queue"]) == (task_id, "high")
        assert app.handle(form).id == task_id and app.get_task(form, "high").id == task_id
    assert ok(invoke("cancel", u.hex)) and app.get_task(task_id).state is TaskState.CANCELLED
    old = uuid.uuid4().hex  # a record as enqueue wrote it before ids were compact
    r.hset(f"orch:{{high}}:task:{old}", mapping={"id": old, "name": "pkg.mod:fn", "queue": "high", "state": "PENDING"})
    r.zadd("orch:{high}:pending", {old: 1})
    assert app.get_task(old).id == old and app.handle(old).id == old
    assert dict(re.split(r"\s+", line, maxsplit=1) for line in ok(invoke("inspect", old)))["id"] == old
    assert app.cancel(old) is TaskState.CANCELLED
    assert invoke("inspect", uuid.uuid4().hex).exit_code != 0


def test_inspect_json_with_queue(invoke: Invoke, app: Orchestrator) -> None:
    task_id = app.enqueue("pkg.mod:fn").id
    (lease,) = claim(app)
    fail(app, lease)
    result = invoke("inspect", task_id, "-q", "default", "--json")
    ok(result)
    record = json.loads(result.stdout)
    assert record["state"] == "FAILED" and record["attempts"] == 1
    assert record["error"]["type"] == "ValueError" and record["error"]["message"] == "boom"
    for name in ("created_at", "run_at", "started_at", "completed_at"):
        assert ISO.match(record[name]), name
    assert record["started_at"] <= record["completed_at"]


def test_inspect_shows_the_last_progress(invoke: Invoke, app: Orchestrator, r: redis.Redis) -> None:
    task_id = app.enqueue("pkg.mod:fn").id
    assert re.fullmatch(r"progress\s+-", next(x for x in ok(invoke("inspect", task_id)) if x.startswith("progress")))
    (lease,) = claim(app)
    at = run(app.redis, app._scripts("default").progress(task_id, lease.token, "0.42", b'{"step":3}', max_bytes=100))
    line = next(x for x in ok(invoke("inspect", task_id)) if x.startswith("progress"))
    assert re.fullmatch(r'progress\s+42% \{"step": 3\} at ' + re.escape(iso(at)), line)
    record = json.loads(invoke("inspect", task_id, "--json").stdout)
    assert record["progress"] == {"fraction": 0.42, "data": {"step": 3}, "at_ms": at}


def test_inspect_shows_the_error_and_its_traceback(invoke: Invoke, app: Orchestrator) -> None:
    app.enqueue("pkg.mod:fn")
    (lease,) = claim(app)
    fail(app, lease)
    lines = ok(invoke("inspect", lease.task_id))
    assert re.fullmatch(r"error\s+ValueError: boom", lines[-4])
    assert lines[-3:] == ["  Traceback:", "    line 1", "  ValueError"]


def test_inspect_unknown_task(invoke: Invoke, app: Orchestrator) -> None:
    app.enqueue("pkg.mod:fn")
    one_line_error(invoke("inspect", "nope"), "no task nope in any queue")
    one_line_error(invoke("inspect", "nope", "-q", "default"), "no task nope in queue 'default'")
    one_line_error(invoke("inspect", "nope", "-q", "bad queue"), "invalid queue name")


# ----------------------------------------------------------------------------- events


def test_events_prints_one_line_per_event(invoke: Invoke, app: Orchestrator) -> None:
    ids = [app.enqueue("pkg.mod:fn", priority=p).id for p in (1, 2, 3)]
    lines = ok(invoke("events"))
    assert len(lines) == 3
    for line, task_id, priority in zip(lines, ids, (1, 2, 3), strict=True):
        when, queue, event, task, *rest = line.split(" ")
        assert ISO.match(when) and (queue, event, task) == ("default", "enqueued", task_id)
        assert rest == ["name=pkg.mod:fn", f"priority={priority}", "state=PENDING"]
    assert [line.split(" ")[3] for line in ok(invoke("events", "--count", "2"))] == ids[1:]
    assert ok(invoke("events", "-n", "0")) == []


def test_events_keeps_errors_on_one_line(invoke: Invoke, app: Orchestrator) -> None:
    app.enqueue("pkg.mod:fn", max_retries=0)
    (lease,) = claim(app)
    fail(app, lease, mode="retry")
    last = ok(invoke("events", "-n", "1"))
    assert len(last) == 1
    assert " failed " in last[0] and 'error="ValueError: boom"' in last[0] and "worker=w1" in last[0]


def test_events_json_and_other_queues(invoke: Invoke, app: Orchestrator) -> None:
    task_id = app.enqueue("pkg.mod:fn", queue="other").id
    one_line_error(invoke("events", "-q", "default"), "no queue 'default' (known: other)")
    (line,) = ok(invoke("events", "-q", "other", "--json"))
    event = json.loads(line)
    assert (event["event"], event["task_id"], event["queue"]) == ("enqueued", task_id, "other")
    assert event["fields"] == {"name": "pkg.mod:fn", "priority": 5, "state": "PENDING"}  # a number, not "5"
    assert ISO.match(event["time"]) and re.fullmatch(r"\d+-\d+", event["id"])
    one_line_error(invoke("events", "--count", "-1"), "--count")


def _wait_for_server_clock_past(app: Orchestrator, event_id: str, timeout: float = 5.0) -> None:
    ms = int(event_id.partition("-")[0])
    deadline = time.monotonic() + timeout
    while redis_time_ms(app.redis) <= ms:
        assert time.monotonic() < deadline, "the Redis clock did not move"


def test_events_of_every_queue_by_default(invoke: Invoke, app: Orchestrator) -> None:
    first = app.enqueue("pkg.mod:fn", queue="other").id
    (event,) = app.queue("other").events()
    _wait_for_server_clock_past(app, event.id)  # events in two streams within one ms have no order
    second = app.enqueue("pkg.mod:fn", queue="high").id
    lines = ok(invoke("events"))
    assert [line.split(" ")[1:4] for line in lines] == [["other", "enqueued", first], ["high", "enqueued", second]]
    assert [line.split(" ")[3] for line in ok(invoke("events", "-n", "1"))] == [second]


def test_events_json_error_is_an_object(invoke: Invoke, app: Orchestrator) -> None:
    app.enqueue("pkg.mod:fn", max_retries=0)
    (lease,) = claim(app)
    fail(app, lease, mode="retry")
    (line,) = ok(invoke("events", "-n", "1", "--json"))
    event = json.loads(line)
    assert event["event"] == "failed" and event["fields"]["attempt"] == 1
    assert event["fields"]["error"]["type"] == "ValueError" and event["fields"]["error"]["message"] == "boom"


# ------------------------------------------------------------------------------ retry


def test_retry_one_failed_task(invoke: Invoke, app: Orchestrator) -> None:
    (task_id,) = failed_ids(app, 1, queue="q2")
    assert ok(invoke("retry", task_id)) == [f"requeued {task_id}"]
    task = app.get_task(task_id, "q2")
    assert (task.state, task.attempts) == (TaskState.PENDING, 0)


def test_retry_refuses_tasks_that_did_not_fail(invoke: Invoke, app: Orchestrator) -> None:
    task_id = app.enqueue("pkg.mod:fn").id
    one_line_error(invoke("retry", task_id), f"cannot retry task {task_id}: it is PENDING")
    one_line_error(invoke("retry", "nope"), "no task nope in any queue")
    one_line_error(invoke("retry", "nope", "-q", "default"), "no task nope in queue 'default'")


def test_retry_needs_ids_or_all_failed(invoke: Invoke, app: Orchestrator) -> None:
    one_line_error(invoke("retry"), "give task ids or --all-failed")
    one_line_error(invoke("retry", "x", "--all-failed", "-q", "default"), "give task ids or --all-failed")
    one_line_error(invoke("retry", "--all-failed"), "--all-failed needs -q")


def test_retry_all_failed_loops_in_batches(
    invoke: Invoke, app: Orchestrator, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queues_module, "BATCH", 2)
    ids = failed_ids(app, 5)
    other = failed_ids(app, 1, queue="other")
    assert ok(invoke("retry", "--all-failed", "-q", "default")) == ["requeued 5 failed tasks of queue default"]
    assert r.zcard("orch:{default}:failed") == 0
    assert {state_of(r, task_id) for task_id in ids} == {"PENDING"}
    assert state_of(r, other[0], "other") == "FAILED"
    assert ok(invoke("retry", "--all-failed", "-q", "default")) == ["requeued 0 failed tasks of queue default"]


# ----------------------------------------------------------------------------- cancel


def test_cancel_pending_and_running_tasks(invoke: Invoke, app: Orchestrator, r: redis.Redis) -> None:
    running = app.enqueue("pkg.mod:fn").id
    pending = app.enqueue("pkg.mod:fn", queue="other").id
    claim(app)
    assert ok(invoke("cancel", pending)) == ["CANCELLED"]
    assert state_of(r, pending, "other") == "CANCELLED"
    assert ok(invoke("cancel", running, "-q", "default")) == ["cancel requested (running)"]
    assert app.get_task(running).cancel_requested and state_of(r, running) == "RUNNING"


def test_cancel_errors(invoke: Invoke, app: Orchestrator) -> None:
    app.enqueue("pkg.mod:fn")
    (lease,) = claim(app)
    complete(app, lease)
    one_line_error(invoke("cancel", lease.task_id), f"cannot cancel task {lease.task_id}: it is already SUCCESS")
    one_line_error(invoke("cancel", lease.task_id, "-q", "other"), f"no task {lease.task_id} in queue 'other'")
    one_line_error(invoke("cancel", "nope"), "no task nope in any queue")
    one_line_error(invoke("cancel"), "Missing argument")


# ------------------------------------------------------------------------------ purge


def test_purge_refuses_without_yes(invoke: Invoke, app: Orchestrator, r: redis.Redis) -> None:
    failed_ids(app, 2)
    one_line_error(invoke("purge", "-q", "default"), "add --yes")
    one_line_error(invoke("purge", "-q", "default", "--state", "all"), "add --yes")
    assert r.zcard("orch:{default}:failed") == 2
    one_line_error(invoke("purge", "--yes"), "Missing option '-q'")
    one_line_error(invoke("purge", "-q", "default", "--state", "running", "--yes"), "'running' is not one of")


def test_purge_failed_loops_until_empty(
    invoke: Invoke, app: Orchestrator, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queues_module, "BATCH", 2)
    ids = failed_ids(app, 5)
    kept = app.enqueue("pkg.mod:fn").id
    assert ok(invoke("purge", "-q", "default", "--yes")) == ["purged 5 tasks of queue default (5 failed)"]
    assert r.zcard("orch:{default}:failed") == 0
    assert [state_of(r, task_id) for task_id in ids] == [None] * 5
    assert state_of(r, kept) == "PENDING"


def test_purge_all_spares_running_tasks(invoke: Invoke, app: Orchestrator, r: redis.Redis) -> None:
    ids = [app.enqueue("pkg.mod:fn").id for _ in range(4)]
    app.enqueue("pkg.mod:fn", delay=60)
    leases = claim(app, 3)
    complete(app, leases[0])
    fail(app, leases[1])
    assert ok(invoke("purge", "-q", "default", "--state", "all", "--yes")) == [
        "purged 4 tasks of queue default (1 failed, 1 done, 1 pending, 1 scheduled, 0 retrying)"
    ]
    for index in ("pending", "scheduled", "retrying", "failed", "done", "cancelled"):
        assert r.zcard(f"orch:{{default}}:{index}") == 0, index
    assert r.zcard("orch:{default}:running") == 1
    assert state_of(r, leases[2].task_id) == "RUNNING"
    assert [state_of(r, task_id) for task_id in ids if task_id != leases[2].task_id] == [None] * 3


# ------------------------------------------------- worker, scheduler, reaper (wiring)


@dataclass
class Recorded:
    runs: list[tuple[str, Orchestrator, Any]] = field(default_factory=list)
    logging: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Recorded:
    """Stand-ins for run_worker / run_scheduler that record their arguments and return 3."""
    seen = Recorded()

    def fake(module: str, name: str) -> None:
        def runner(app: Orchestrator, settings: Any) -> int:
            seen.runs.append((name, app, settings))
            return 3

        monkeypatch.setitem(sys.modules, module, types.SimpleNamespace(**{name: runner}))

    fake("orchestrator.worker", "run_worker")
    fake("orchestrator.scheduler", "run_scheduler")
    monkeypatch.setattr(logging, "basicConfig", lambda **kw: seen.logging.append(kw))
    return seen


def test_worker_passes_its_options_as_settings(invoke: Invoke, calls: Recorded, redis_server: LocalRedis) -> None:
    result = invoke(
        "--prefix", "p1", "worker", "-A", "proj.tasks", "--app", "proj.more", "-q", "high:3", "-q", "default",
        "--concurrency", "4", "--pool", "process", "--name", "w9", "--heartbeat-interval", "0.5",
        "--grace", "2", "--idle-wait", "0.25", "--lease-timeout", "7", "-v",
    )
    assert result.exit_code == 3, (result.output, result.exception)
    ((name, app, settings),) = calls.runs
    assert name == "run_worker"
    assert settings == WorkerSettings(
        apps=("proj.tasks", "proj.more"), queues=(("high", 3), ("default", 1)), concurrency=4, pool="process",
        name="w9", heartbeat_interval=0.5, grace=2, idle_wait=0.25,
    )
    assert app.settings == Settings(redis_url=redis_server.url, prefix="p1", lease_timeout=7)
    (config,) = calls.logging
    assert config["level"] == "DEBUG" and "%(asctime)s" in config["format"] and "%(message)s" in config["format"]


def test_worker_defaults_and_environment(invoke: Invoke, calls: Recorded) -> None:
    assert invoke("worker").exit_code == 3
    assert calls.runs[0][2] == WorkerSettings()
    assert calls.runs[0][1].settings.lease_timeout == Settings().lease_timeout
    assert calls.logging[0]["level"] == "INFO"
    env = {"ORCH_QUEUES": "a:2 b", "ORCH_CONCURRENCY": "6", "ORCH_APP": "m1 m2", "ORCH_LOG_LEVEL": "warning"}
    assert invoke("worker", env=env).exit_code == 3
    assert calls.runs[1][2] == WorkerSettings(queues=(("a", 2), ("b", 1)), concurrency=6, apps=("m1", "m2"))
    assert calls.logging[1]["level"] == "WARNING"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["-q", "a:0"], "weight of queue 'a' must be an integer >= 1"),
        (["-q", "a:x"], "weight of queue 'a'"),
        (["-q", "bad name:2"], "invalid queue name"),
        (["--concurrency", "0"], "invalid option --concurrency: Input should be greater than or equal to 1"),
        (["--pool", "fork"], "'fork' is not one of"),
        (["--lease-timeout", "0"], "invalid option --lease-timeout"),
    ],
)
def test_worker_rejects_bad_options(invoke: Invoke, calls: Recorded, options: list[str], message: str) -> None:
    one_line_error(invoke("worker", *options), message)
    assert calls.runs == []


def test_scheduler_and_reaper(invoke: Invoke, calls: Recorded) -> None:
    assert invoke("scheduler", "-q", "a", "-q", "b", "--interval", "0.1", "--batch", "50").exit_code == 3
    assert calls.runs[0][0] == "run_scheduler"
    assert calls.runs[0][2] == SchedulerSettings(queues=("a", "b"), interval=0.1, batch=50)
    assert invoke("reaper", "--log-level", "error", env={"ORCH_SCHEDULER_QUEUES": "c"}).exit_code == 3
    assert calls.runs[1][2] == SchedulerSettings(queues=("c",), promote=False)
    assert [c["level"] for c in calls.logging] == ["INFO", "ERROR"]
    one_line_error(invoke("scheduler", "--batch", "0"), "invalid option --batch")
    one_line_error(invoke("reaper", "-q", "a:1"), "invalid queue name")


def test_worker_not_available_yet(invoke: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "orchestrator.worker", None)
    monkeypatch.setitem(sys.modules, "orchestrator.scheduler", types.SimpleNamespace())
    monkeypatch.setattr(logging, "basicConfig", lambda **kw: None)
    one_line_error(invoke("worker"), "orchestrator.worker.run_worker is not available yet")
    one_line_error(invoke("reaper"), "orchestrator.scheduler.run_scheduler is not available yet")


def test_demo_rejects_bad_options_in_one_line(invoke: Invoke) -> None:
    one_line_error(invoke("demo", "--tasks", "0"), "Invalid value for '--tasks'")


# ---------------------------------------------------------------- errors at the edge


@pytest.mark.parametrize(
    "command",
    [["status"], ["enqueue", "pkg.mod:fn"], ["inspect", "x"], ["events"], ["cancel", "x", "-q", "q"],
     ["retry", "--all-failed", "-q", "q"], ["purge", "-q", "q", "--yes"]],
)
def test_connection_refused_is_one_line(invoke: Invoke, command: list[str]) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    one_line_error(invoke("--redis-url", url, *command), f"cannot reach Redis at {url}: ", "refused", code=3)


def test_error_messages_hide_the_password(invoke: Invoke) -> None:
    port = free_port()
    line = one_line_error(invoke("status", env={"ORCH_REDIS_URL": f"redis://user:s3cret@127.0.0.1:{port}/0"}), code=3)
    assert f"redis://user:***@127.0.0.1:{port}/0" in line and "s3cret" not in line


def test_bad_global_options_are_one_line(invoke: Invoke) -> None:
    one_line_error(invoke("--redis-url", "http://x", "status"), "--redis-url", "not a usable Redis URL")
    one_line_error(invoke("--prefix", "a b", "status"), "invalid option --prefix: String should match pattern")
    one_line_error(invoke("status", env={"ORCH_PREFIX": "a:b"}), "invalid option --prefix: String should match pattern")
    one_line_error(invoke("nosuch"), "No such command 'nosuch'")
    one_line_error(invoke("--nosuch"), "No such option '--nosuch'")


def test_prefix_separates_deployments(invoke: Invoke, r: redis.Redis) -> None:
    (task_id,) = ok(invoke("--prefix", "other", "enqueue", "pkg.mod:fn"))
    assert r.exists(f"other:{{default}}:task:{task_id}") and r.smembers("other:queues") == {b"default"}
    one_line_error(invoke("inspect", task_id), "no task")
    assert ok(invoke("inspect", task_id, env={"ORCH_PREFIX": "other"}))[0].split() == ["id", task_id]


# ------------------------------------------------------------------ real processes


def orch_process(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ORCH), *args], env=clean_env(ORCH_REDIS_URL=url), capture_output=True, text=True, timeout=60
    )


def test_the_console_script_runs(redis_server: LocalRedis, r: redis.Redis) -> None:
    done = orch_process("enqueue", "pkg.mod:fn", "--args", "[7]", url=redis_server.url)
    assert (done.returncode, done.stderr) == (0, "")
    task_id = done.stdout.strip()
    shown = orch_process("inspect", task_id, "--json", url=redis_server.url)
    assert shown.returncode == 0 and json.loads(shown.stdout)["args"] == [7]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["inspect", "nope"], "Error: no task nope in any queue"),
        (["enqueue", "pkg.mod:fn", "--args", "{"], "Error: Invalid value for '--args': not valid JSON"),
        (["enqueue", "pkg.mod:fn", "--priority", "11"], "Error: priority must be an integer"),
        (["purge", "-q", "default"], "Error: purge deletes failed tasks"),
        (["demo", "--workers", "0"], "Error: Invalid value for '--workers'"),
    ],
)
def test_processes_exit_2_with_one_line(
    redis_server: LocalRedis, r: redis.Redis, args: list[str], message: str
) -> None:
    done = orch_process(*args, url=redis_server.url)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(message), done.stderr


@pytest.mark.parametrize("args", [["status"], ["enqueue", "pkg.mod:fn"], ["events", "--follow"]])
def test_process_without_redis_exits_3_without_traceback(args: list[str]) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    done = orch_process(*args, url=url)
    assert done.returncode == 3 and done.stdout == ""
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith(f"Error: cannot reach Redis at {url}: ")


@pytest.mark.timeout(60)
def test_events_follow_prints_new_events_until_interrupted(redis_server: LocalRedis, app: Orchestrator) -> None:
    first = app.enqueue("pkg.mod:fn").id
    # A Ctrl-C at a terminal: the child starts with SIGINT at its default even when this run
    # inherited it ignored (a background job of a shell without job control), which the child
    # would inherit too, and Python then never raises KeyboardInterrupt (a handler, unlike
    # an ignored signal, is reset to the default by exec).
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(
            [str(ORCH), "events", "--follow"], env=clean_env(ORCH_REDIS_URL=redis_server.url),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
    finally:
        signal.signal(signal.SIGINT, inherited)
    with proc:  # its pipes closed whatever happens
        assert proc.stdout is not None
        assert f" enqueued {first} " in proc.stdout.readline()  # the backlog, then it waits
        second = app.enqueue("pkg.mod:fn", queue="default").id
        assert f" enqueued {second} " in proc.stdout.readline()  # arrived through XREAD BLOCK
        (lease,) = claim(app)
        assert f" claimed {lease.task_id} " in proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0 and err == "" and out == ""


# ----------------------------------------------------------------------------- doctor


def test_doctor_flags_missing_persistence_and_workers(invoke: Invoke, app: Orchestrator) -> None:
    result = invoke("doctor", "--json")
    assert result.exit_code == 1
    checks = {c["check"]: c for c in json.loads(result.output)}
    assert checks["eviction"]["status"] == "ok"
    assert checks["persistence"]["status"] == "warn"  # the test server runs without AOF
    assert checks["workers"]["status"] == "warn"


def test_worker_strict_refuses_an_unsafe_server(invoke: Invoke) -> None:
    one_line_error(invoke("worker", "--strict"), "not starting (--strict)")


def test_status_and_events_survive_hostile_values(invoke: Invoke, app: Orchestrator, r: redis.Redis) -> None:
    """Issue 11: a non-numeric counter, last_seen abc, a +inf score, a non-UTF-8 stream field."""
    app.enqueue("pkg.mod:fn")
    run(app.redis, app._scripts("default").heartbeat("w1", 30_000, {"host": "h\x1b[31m"}, []))
    r.hset("orch:{default}:worker:w1", "last_seen", "abc")
    r.hset("orch:{default}:stats", "failed", "x")
    r.zadd("orch:{default}:workers", {"w-inf": float("inf")})
    r.xadd("orch:{default}:events", {b"event": b"claimed\n2026 forged", b"task": b"\xff", b"attempt": b"1e3"})
    text = "\n".join(ok(invoke("status")))
    assert "note: counter failed holds 'x'" in text and "\x1b" not in text
    assert "w-inf  UNRESPONSIVE" in text and "heartbeat deadline inf is not a time" in text
    data = json.loads(invoke("status", "--json").stdout)["queues"]["default"]
    assert "failed" not in data["totals"] and data["notes"]
    lines = ok(invoke("events"))
    assert len(lines) == 2 and '"claimed\\n2026 forged"' in lines[-1] and "note=" in lines[-1]
    (last,) = [json.loads(line) for line in ok(invoke("events", "-n", "1", "--json"))]
    assert last["fields"]["attempt"] is None and last["task_id"] == "\ufffd"


# ------------------------------------------------------------------------------ tasks


def test_tasks_lists_a_page_and_its_cursor(invoke: Invoke, app: Orchestrator, r: redis.Redis) -> None:
    failed_ids(app, 3)
    app.enqueue("pkg.mod:other")
    in_order = [raw.decode() for raw in r.zrange("orch:{default}:failed", 0, -1)]  # when they failed, then id
    first = ok(invoke("tasks", "-q", "default", "--state", "failed", "--limit", "2"))
    assert [line.split("  ")[0] for line in first[:2]] == in_order[:2]
    assert "FAILED  pkg.mod:fn  priority 5  attempt 1/4" in first[0] and "error ValueError: boom" in first[0]
    assert first[-1].startswith("next page: --cursor ")
    cursor = first[-1].removeprefix("next page: --cursor ")
    rest = ok(invoke("tasks", "-q", "default", "--state", "failed", "--limit", "2", "--cursor", cursor))
    assert [line.split("  ")[0] for line in rest] == in_order[2:]
    page = json.loads(invoke("tasks", "-q", "default", "--name", "pkg.mod:other", "--json").stdout)
    assert [t["name"] for t in page["tasks"]] == ["pkg.mod:other"] and page["cursor"] is None
    assert page["tasks"][0]["priority"] == 5 and ISO.match(page["tasks"][0]["created_at"])


def test_tasks_refuses_what_cannot_be_listed(invoke: Invoke, app: Orchestrator) -> None:
    app.enqueue("pkg.mod:fn")
    one_line_error(invoke("tasks", "-q", "nope"), "no queue 'nope' (known: default)")
    one_line_error(invoke("tasks", "-q", "default", "--state", "stuck"), "'stuck' is not one of")
    one_line_error(invoke("tasks", "-q", "default", "--cursor", "junk"), "invalid cursor")
    assert ok(invoke("tasks", "-q", "default", "--state", "retrying")) == ["no retrying tasks in queue default"]
