"""What a worker does with a failed attempt (issue 10): the task's policy, not a blanket retry.

``dont_retry`` / ``retry_on``, ``FailNow``, a call whose arguments do not fit the function,
a result that is not JSON; and a timeout's stored traceback showing where the task was.
The tasks of ``tests.integration.policy_tasks`` run through the pytest plugin's
``orch_app.run_until_idle()`` (the worker's own code, thread pool, in this process), and,
in the slow variant, in a Worker with a process pool whose children judge the error
themselves; a retry waits a minute, so the first attempt's outcome is what each test reads.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from orchestrator import Orchestrator, Settings, Task, TaskState, WorkerSettings
from orchestrator.worker.worker import Worker
from tests.integration import policy_tasks

S = TaskState


@pytest.fixture
def orch_user_app() -> Orchestrator:
    return policy_tasks.app  # orch_app is the worker's side: the registry whose policies decide


@pytest.fixture
def producer(orch_app: Orchestrator) -> Iterator[Orchestrator]:
    """Another service's producer: it has not registered the tasks, so their options come
    from the enqueue (and arguments that do not fit reach the worker unchecked)."""
    app = Orchestrator(settings=orch_app.settings)
    yield app
    app.close()


class InProcess:
    """``orch_app.run_until_idle()``: the worker's code, thread pool, in this process."""

    pool = "thread"

    def __init__(self, app: Orchestrator) -> None:
        self.app = app

    def wait(self, handle_id: str) -> None:
        # An earlier case's retry may be due too (the producer's default backoff: 0.5-1 s) and run.
        [run] = [r for r in self.app.run_until_idle() if r.id == handle_id]
        assert run.attempt == 1, run

    def stop(self) -> None:
        pass


class Running:
    """A Worker on its own event loop in a thread of the test process (also test_cancel_push's)."""

    def __init__(self, redis_url: str, pool: str, heartbeat: float = 5.0) -> None:
        self.pool = pool
        app = Orchestrator(settings=Settings(redis_url=redis_url, lease_timeout=max(30.0, 3 * heartbeat)))
        settings = WorkerSettings(
            name=f"policy-{pool}", pool=pool, concurrency=4, grace=0, idle_wait=0.05,
            apps=("tests.integration.policy_tasks",), heartbeat_interval=heartbeat,
        )
        self.worker = Worker(app, settings, dict(policy_tasks.app.registry))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self.worker.run(),), daemon=True)
        self.thread.start()

    def wait(self, handle_id: str) -> None:
        pass  # first_attempt polls the record

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.worker.stop)
        self.thread.join(15)
        assert not self.thread.is_alive(), "the worker did not stop"
        self.loop.close()


Runner = InProcess | Running


@pytest.fixture(params=["thread", pytest.param("process", marks=pytest.mark.slow)])  # process: ~5-10 s
def worker(request: pytest.FixtureRequest, orch_app: Orchestrator) -> Iterator[Runner]:
    url = orch_app.settings.redis_url
    running: Runner = InProcess(orch_app) if request.param == "thread" else Running(url, "process")
    yield running
    running.stop()


def first_attempt(app: Orchestrator, worker: Runner, name: str, *args: Any, wait: float = 20, **options: Any) -> Task:
    """Enqueue by name (no signature check here) and return the record once attempt 1 ended."""
    handle = app.enqueue(name, list(args), **options)
    worker.wait(handle.id)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        task = handle.info()
        if task.state in (S.RETRYING, S.FAILED, S.SUCCESS):
            return task
        time.sleep(0.01)
    raise AssertionError(f"attempt 1 of {name}{args} did not end within {wait} s: {handle.info()}")


def test_the_task_policy_decides_what_is_retried(worker: Runner, producer: Orchestrator) -> None:
    cases = [
        ("policy:dont_retry", ["value"], S.FAILED, "ValueError"),
        ("policy:dont_retry", ["key"], S.FAILED, "KeyError"),  # a subclass of a dont_retry class
        ("policy:dont_retry", ["runtime"], S.RETRYING, "RuntimeError"),
        ("policy:retry_on", ["conn"], S.RETRYING, "ConnectionRefusedError"),
        ("policy:retry_on", ["value"], S.FAILED, "ValueError"),
        ("policy:fail_now", ["x"], S.FAILED, "FailNow"),
        ("policy:add", ["x", 1], S.RETRYING, "TypeError"),  # raised inside the function: retried
        ("policy:add", [1], S.FAILED, "TypeError"),  # the call itself does not fit: never retried
        ("policy:add", [1, 2, 3], S.FAILED, "TypeError"),
        ("policy:when", [], S.FAILED, "NotSerializable"),
    ]
    for name, args, state, kind in cases:
        task = first_attempt(producer, worker, name, *args)
        assert (task.state, task.attempts) == (state, 1), (name, args, task)
        assert task.error is not None and task.error.type == kind, (name, args, task.error)
        assert "mode" not in task.error.model_dump()
    ends = (first_attempt(producer, worker, "policy:fail_now", "y"), first_attempt(producer, worker, "policy:add", 1))
    failed = {t.name: t for t in ends}
    error = failed["policy:fail_now"].error
    assert error is not None and error.message == "not a number: 'y'"
    assert "int(text)" in error.traceback and "The above exception was the direct cause" in error.traceback
    error = failed["policy:add"].error
    assert error is not None
    assert error.message == "arguments do not fit task policy:add(a, b): missing a required argument: 'b'"
    when = first_attempt(producer, worker, "policy:when").error
    assert when is not None and when.message.startswith("result['at'] is a datetime.datetime, not JSON")


@pytest.mark.parametrize(("name", "where"), [("policy:nap", "in _user_wait"), ("policy:anap", "in anap")])
def test_a_timeout_stores_where_the_task_was_not_the_library(
    worker: Runner, producer: Orchestrator, name: str, where: str
) -> None:
    task = first_attempt(producer, worker, name, timeout=0.3, max_retries=0)
    assert task.state is S.FAILED and task.error is not None and task.error.type == "TaskTimeout"
    trace = task.error.traceback
    assert trace.endswith("TaskTimeout: task timed out after 0.3 s\n"), trace
    for library in ("orchestrator/worker", "concurrent/futures", "threading.py"):
        assert library not in trace, trace
    if worker.pool == "process" and name == "policy:nap":
        assert trace == "TaskTimeout: task timed out after 0.3 s\n"  # the child was killed: no frames
    else:
        assert where in trace and "policy_tasks.py" in trace, trace
