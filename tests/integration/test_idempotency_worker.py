"""Idempotency keys with a real `orch worker`: a producer's resend after a lost reply
runs the work once (``key=``); ``unique_key=`` runs it again once the first run ended.
How often each task ran comes from what the sample tasks record (``procs.attempts``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator import Orchestrator, TaskHandle
from orchestrator.redis_local import LocalRedis
from tests.integration.procs import Proc, Procs, wait_for


@pytest.fixture
def procs(app: Orchestrator, redis_server: LocalRedis, tmp_path: Path) -> Iterator[Procs]:
    with Procs(redis_server.url, tmp_path) as started:
        yield started


def run_out(app: Orchestrator, worker: Proc, *handles: TaskHandle) -> None:
    """Wait until each task ended, then until a task enqueued after them did: the worker
    takes tasks in order, so anything it was given before has run by then."""
    marker = app.enqueue("tests:add", [0, 0])
    for handle in (*handles, marker):
        wait_for(lambda h=handle: h.status().is_final, f"task {handle.id} to end", 15, alive=[worker])


def test_a_producer_resending_after_the_task_finished_gets_it_and_the_work_runs_once(
    procs: Procs, app: Orchestrator
) -> None:
    worker = procs.worker("w1")
    sent = app.enqueue("tests:add", [2, 3], key="invoice-7")  # its reply is "lost": the producer retries
    run_out(app, worker, sent)
    retry = app.enqueue("tests:add", [2, 3], key="invoice-7")
    assert (retry.id, retry.created) == (sent.id, False)
    assert retry.result(timeout=5) == 5
    run_out(app, worker)
    assert [a.event for a in procs.attempts(sent.id)] == ["run"]
    assert len(procs.attempts()) == 3  # the keyed task and the two markers: nothing else ran


def test_unique_key_runs_the_work_again_once_the_first_run_ended(procs: Procs, app: Orchestrator) -> None:
    worker = procs.worker("w1")
    first = app.enqueue("tests:add", [1, 1], unique_key="refresh")
    run_out(app, worker, first)
    second = app.enqueue("tests:add", [1, 1], unique_key="refresh")
    assert second.created and second.id != first.id
    run_out(app, worker, second)
    assert [a.event for a in procs.attempts(first.id)] == [a.event for a in procs.attempts(second.id)] == ["run"]
