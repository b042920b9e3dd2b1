"""``orch enqueue`` with ``--app`` (issue 10): the registered task's options and signature apply.

Without ``--app`` a name is sent as given (enqueue by name from anywhere); a name that
cannot be a task name is refused either way. Every refusal is one line, exit 2, and
leaves Redis byte-for-byte unchanged.
"""

from __future__ import annotations

import os

import pytest
import redis
from click.testing import CliRunner, Result

from orchestrator import Orchestrator, TaskState
from orchestrator.cli import orch
from orchestrator.redis_local import LocalRedis
from tests.redis_server import snapshot

APP = "tests.integration.policy_tasks"


@pytest.fixture
def invoke(redis_server: LocalRedis, r: redis.Redis):  # type: ignore[no-untyped-def]
    runner = CliRunner()
    unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("ORCH_")}

    def call(*args: str) -> Result:
        return runner.invoke(orch, list(args), env={**unset, "ORCH_REDIS_URL": redis_server.url})

    return call


def refused(result: Result, fragment: str) -> None:
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.stdout == "" and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("Error: ") and fragment in result.stderr, result.stderr


def test_app_gives_the_registered_queue_timeout_and_retries(invoke, app: Orchestrator) -> None:
    result = invoke("enqueue", "policy:thumb", "--app", APP, "--args", '["a.png"]')
    assert result.exit_code == 0, result.output
    task = app.get_task(result.stdout.strip())
    assert (task.queue, task.timeout_ms, task.max_retries, task.backoff_ms, task.priority) == (
        "images", 12_000, 5, 2000, 2
    )
    assert task.state is TaskState.PENDING
    override = invoke("enqueue", "policy:thumb", "-A", APP, "--args", '["b"]', "-q", "q2", "--max-retries", "0")
    task = app.get_task(override.stdout.strip())
    assert (task.queue, task.max_retries, task.timeout_ms) == ("q2", 0, 12_000)


def test_without_app_the_name_is_sent_with_the_defaults(invoke, app: Orchestrator) -> None:
    result = invoke("enqueue", "policy:thumb")  # not checked: another service may define it
    task = app.get_task(result.stdout.strip())
    assert (task.queue, task.timeout_ms, task.args) == ("default", 300_000, [])


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["policy:thumb", "-A", APP], "arguments do not fit task policy:thumb(path, width=100): missing a required"),
        (["policy:thumb", "-A", APP, "--kwargs", '{"height": 1}', "--args", '["a"]'], "unexpected keyword"),
        (["policy:nope", "-A", APP], "task 'policy:nope' is not registered by --app " + APP),
        (["policy:thumb", "-A", "no_such_module_here"], "cannot import task module 'no_such_module_here'"),
        (["bad name"], "invalid task name 'bad name'"),
        (["tab\tname"], "invalid task name"),
        (["x" * 257], "invalid task name"),
        (["policy:thumb", "--args", '[{"when": 1e999}]'], "args[0]['when'] is inf: JSON has no NaN or Infinity"),
        (["policy:thumb", "--kwargs", '{"n": NaN}'], "kwargs['n'] is nan"),
    ],
)
def test_mistakes_are_refused_in_one_line_and_write_nothing(invoke, r: redis.Redis, args, fragment) -> None:
    before = snapshot(r)
    refused(invoke("enqueue", *args), fragment)
    assert snapshot(r) == before
