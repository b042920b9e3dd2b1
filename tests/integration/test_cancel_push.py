"""A cancel reaches a RUNNING task's worker at once (issue 10), not at its next heartbeat.

cancel.lua publishes the task id on the queue's cancel channel; the worker listens, checks
the record (cancel requested, under the lease it holds) and stops the task. The heartbeat
here is 10 s apart, so a task cancelled within a few seconds was stopped by the push.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from orchestrator import Orchestrator, TaskHandle, TaskState
from tests.integration.test_retry_policy import Running
from tests.redis_server import RedisServer

S = TaskState
HEARTBEAT = 10.0


@pytest.fixture
def worker(redis_server: RedisServer, app: Orchestrator) -> Iterator[Running]:
    running = Running(redis_server.url, "thread", heartbeat=HEARTBEAT)
    yield running
    running.stop()


def wait_state(handle: TaskHandle, state: TaskState, within: float) -> None:
    deadline = time.monotonic() + within
    while handle.status() is not state:
        assert time.monotonic() < deadline, f"task not {state.value} within {within} s: {handle.info()}"
        time.sleep(0.01)


def test_a_cancel_stops_a_running_task_before_the_next_heartbeat(
    worker: Running, app: Orchestrator, r: redis.Redis
) -> None:
    target, bystander = app.enqueue("policy:long"), app.enqueue("policy:long")
    wait_state(target, S.RUNNING, 10)
    wait_state(bystander, S.RUNNING, 10)
    r.publish(app.keys("default").cancels, bystander.id)  # a forged hint: no cancel was requested
    r.publish(app.keys("default").cancels, "no-such-task")
    asked = time.monotonic()
    assert app.cancel(target.id) is S.RUNNING  # requested: the worker stops it
    wait_state(target, S.CANCELLED, HEARTBEAT / 2)
    assert time.monotonic() - asked < HEARTBEAT
    assert bystander.status() is S.RUNNING, "a message without a cancel request stops nothing"
    assert worker.thread.is_alive()
