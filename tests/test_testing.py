"""``orchestrator.testing``: the assertions, the pytest plugin as a user's pytest loads it,
and the README's "Testing your tasks" example, run as a user would run it.

The plugin tests run pytest in a subprocess on files written to a temporary directory, so
the plugin is loaded by its entry point exactly as in a user's project.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path
from unittest.mock import ANY

import pytest

from orchestrator import ConfigurationError, Orchestrator, TaskState
from orchestrator.testing import assert_enqueued, assert_not_enqueued, enqueued
from orchestrator.testing.backend import start, unavailable

ROOT = Path(__file__).resolve().parents[1]


def pytest_in(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m pytest`` in ``directory`` (no ini file there: the user's defaults)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCH_", "PYTEST_"))}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=directory, env=env, capture_output=True, text=True, timeout=90,
    )


def readme_example() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Testing your tasks") :]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found, "no python example under 'Testing your tasks'"
    return found[1]


# --------------------------------------------------------------- the README


@pytest.mark.parametrize("backend", ["redis-server", "fakeredis"])
def test_the_readme_example_passes_as_a_user_runs_it(tmp_path: Path, backend: str) -> None:
    problem = unavailable(backend)  # type: ignore[arg-type]  # one of backend.CHOICES
    if problem is not None:
        pytest.skip(problem)
    (tmp_path / "test_billing.py").write_text(readme_example(), encoding="utf-8")
    done = pytest_in(tmp_path, "-W", "error", f"--orch-backend={backend}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout, done.stdout


# ----------------------------------------------------------------- the plugin

PLUGIN_CHECKS = '''
import sys

import pytest

from orchestrator import Orchestrator

app = Orchestrator("redis://127.0.0.1:1/0", clock_offset_ms=5)

@app.task(name="checks:noop")
def noop() -> None: ...

@pytest.fixture
def orch_user_app(request):
    return app if "mine" in request.node.name else None

def test_nothing_is_started_before_a_test_asks():
    assert "orchestrator.testing.plugin" in sys.modules
    assert "orchestrator.testing.backend" not in sys.modules  # what starts the test Redis

def test_mine_points_the_app_at_the_test_redis(orch_app, orch_clock):
    assert orch_app is app and orch_app.settings.redis_url != "redis://127.0.0.1:1/0"
    assert orch_app.clock_offset_ms == 0
    assert orch_app.redis.dbsize() == 0
    noop.delay()
    orch_clock.advance(10)

def test_mine_again_starts_empty_with_the_clock_back(orch_app, orch_clock):
    assert orch_app.redis.dbsize() == 0 and orch_clock.offset == 0

def test_after_them_the_app_is_as_it_was():
    assert app.settings.redis_url == "redis://127.0.0.1:1/0" and app.clock_offset_ms == 5

def test_a_new_app_without_an_override(orch_app):
    assert orch_app is not app and orch_app.registry == {}
    @orch_app.task(name="checks:one")
    def one() -> int:
        return 1
    one.delay()
    assert [r.result for r in orch_app.run_until_idle()] == [1]
'''


def test_the_plugin_loads_by_its_entry_point_and_leaves_a_users_app_as_it_was(tmp_path: Path) -> None:
    (tmp_path / "test_checks.py").write_text(PLUGIN_CHECKS, encoding="utf-8")
    done = pytest_in(tmp_path, "-W", "error", "-p", "no:randomly")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 passed" in done.stdout, done.stdout
    [entry] = [e for e in entry_points(group="pytest11") if e.value.startswith("orchestrator.")]
    assert (entry.name, entry.value) == ("orchestrator", "orchestrator.testing.plugin")  # -p no:orchestrator


def test_fakeredis_is_used_when_it_can_be_else_the_reason_is_given() -> None:
    problem = unavailable("fakeredis")
    if problem is not None:  # the fakeredis:// backend or its extra is not installed here
        assert "redis-server" in problem and "orchestrator-queue[testing]" in problem, problem
        with pytest.raises(ConfigurationError, match="fakeredis"):
            start("fakeredis")
        return
    backend = start("fakeredis")
    app = Orchestrator(backend.url)
    try:
        app.redis.flushdb()

        @app.task(name="fake:double")
        async def double(x: int) -> int:
            return 2 * x

        double.delay(21)
        assert [(r.state, r.result) for r in app.run_until_idle()] == [(TaskState.SUCCESS, 42)]
    finally:
        app.close()
        backend.stop()


# ------------------------------------------------------------- assertions


def test_assert_enqueued_matches_name_arguments_queue_and_count(orch_app: Orchestrator) -> None:
    @orch_app.task(name="mail:send", queue="mail")
    def send(to: str, subject: str = "") -> None: ...

    send.delay("ann@example.org", subject="hi")
    send.enqueue(["bob@example.org"], delay=60)  # scheduled: waiting to run too
    orch_app.enqueue("other:job", [1, (2, 3)])  # by name, nothing registered
    assert_enqueued(send, count=2)
    assert_enqueued(send, args=["ann@example.org"], kwargs={"subject": "hi"})
    assert_enqueued(send, args=[ANY], kwargs={}, queue="mail")
    assert_enqueued("other:job", args=[1, [2, 3]], queue="default")  # the name alone: the test's orch_app
    [info] = enqueued(send, args=["bob@example.org"])
    assert info.state is TaskState.SCHEDULED and info.queue == "mail"
    assert_not_enqueued(send, args=["carl@example.org"])
    assert_not_enqueued("other:job", queue="mail")
    assert len(enqueued()) == 3

    with pytest.raises(AssertionError) as failed:
        assert_enqueued(send, args=["carl@example.org"])
    message = str(failed.value)
    assert message.startswith("expected a task mail:send args=['carl@example.org'] waiting to run; found 0.")
    assert "Waiting to run (3):" in message
    assert "mail:send args=['ann@example.org'] kwargs={'subject': 'hi'} (pending, queue mail, id " in message
    assert "other:job args=[1, [2, 3]] kwargs={} (pending, queue default" in message
    with pytest.raises(AssertionError, match=r"expected 1 task mail:send waiting to run; found 2"):
        assert_enqueued(send, count=1)
    with pytest.raises(AssertionError, match=r"expected no task waiting to run; found 3"):
        assert_not_enqueued()

    orch_app.run_until_idle()  # the ready ones ran (other:job failed: nothing runs it here)
    assert [i.state for i in enqueued()] == [TaskState.SCHEDULED]
    assert_not_enqueued("other:job")


def test_a_name_alone_needs_an_app_outside_orch_app() -> None:
    with pytest.raises(ConfigurationError, match="orch_app"):
        assert_enqueued("mail:send")
