"""What a worker says at start about the tasks it can run (``registry.report_tasks``)."""

from __future__ import annotations

import logging

import pytest

from orchestrator import Orchestrator
from orchestrator.worker.registry import report_tasks

TAG = "[Worker w1]"
log = logging.getLogger("test.report")


def app_with(*queues: str) -> Orchestrator:
    app = Orchestrator("redis://127.0.0.1:1/0")  # never connects
    for i, queue in enumerate(queues):
        app.task(name=f"shop:job{i}", queue=queue)(lambda: None)
    return app


def said(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


def test_lists_every_task_and_its_queue(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    report_tasks(app_with("default", "emails").registry, ["default", "emails"], TAG, log)
    assert said(caplog, logging.INFO) == [
        f"{TAG} Tasks (2):", f"{TAG}   shop:job0 -> queue default", f"{TAG}   shop:job1 -> queue emails",
    ]
    assert said(caplog, logging.WARNING) == []


def test_warns_naming_the_queues_it_does_not_serve(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    report_tasks(app_with("emails", "thumbs", "emails").registry, ["default"], TAG, log)
    assert f"{TAG}   shop:job1 -> queue thumbs (not served here)" in said(caplog, logging.INFO)
    (warning,) = said(caplog, logging.WARNING)
    assert "Queues emails, thumbs declared by registered tasks are not served by this worker" in warning
    assert "which serves default" in warning and "will not run any of their tasks" in warning


def test_some_tasks_served_says_so(caplog: pytest.LogCaptureFixture) -> None:
    report_tasks(app_with("default", "emails").registry, ["default"], TAG, log)
    (warning,) = said(caplog, logging.WARNING)
    assert "Queues emails declared" in warning and "will not run their tasks" in warning


def test_no_tasks_at_all(caplog: pytest.LogCaptureFixture) -> None:
    report_tasks({}, ["default"], TAG, log)
    assert said(caplog, logging.WARNING) == [f"{TAG} No tasks registered: pass --app with the module that defines them"]
