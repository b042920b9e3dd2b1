"""The scheduler's [Monitor] lines say what a reap did to each task."""

from __future__ import annotations

import logging

import pytest

from orchestrator.models import TaskState
from orchestrator.scheduler import Scheduler
from orchestrator.transitions import Reaped, ReapReply


@pytest.mark.parametrize(
    ("state", "said"),
    [
        (TaskState.RETRYING, "requeued for retry"),
        (TaskState.FAILED, "FAILED (no attempts left"),
        (TaskState.CANCELLED, "CANCELLED (its cancel had been requested)"),
    ],
)
def test_a_reaped_task_is_logged_with_what_happened_to_it(
    caplog: pytest.LogCaptureFixture, state: TaskState, said: str
) -> None:
    """A CANCELLED reap was logged as "FAILED (no attempts left)"."""
    caplog.set_level(logging.WARNING)
    Scheduler._log_reap([ReapReply([Reaped("t1", "w1", state)], [], False)])
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith("[Monitor] Lease of task t1 expired on worker w1: ") and said in line, line
