"""worker/outcome.py without a worker: which frames an error record keeps, and the verdicts."""

from __future__ import annotations

import os

import pytest

import orchestrator
from orchestrator import FailNow, Orchestrator, RetryPolicy
from orchestrator.models import FailMode, dumps, loads
from orchestrator.worker.outcome import error_record, user_traceback, verdict

PACKAGE = os.path.dirname(orchestrator.__file__)


def _raise_through(*files: str) -> BaseException:
    """An exception raised by code in the last of ``files``, called through the others in order."""
    namespace: dict[str, object] = {}
    callee = "raise ValueError('boom')"
    for depth, filename in enumerate(reversed(files)):
        source = f"def f{depth}():\n    {callee}\n"
        exec(compile(source, filename, "exec"), namespace)  # frames with chosen file names
        callee = f"f{depth}()"
    try:
        namespace[f"f{len(files) - 1}"]()  # type: ignore[operator]
    except ValueError as exc:
        assert exc.__traceback__ is not None
        return exc.with_traceback(exc.__traceback__.tb_next)  # without this test's own frame
    raise AssertionError("nothing raised")


def test_the_calling_frames_of_the_library_are_left_out() -> None:
    exc = _raise_through(os.path.join(PACKAGE, "worker", "runner.py"), "/app/tasks.py", "/app/helpers.py")
    trace = user_traceback(exc)
    assert "runner.py" not in trace and trace.count('File "/app/') == 2, trace
    assert trace.endswith("ValueError: boom\n")


def test_library_frames_called_by_the_task_and_the_demo_tasks_stay() -> None:
    inner = _raise_through("/app/tasks.py", os.path.join(PACKAGE, "context.py"))
    assert "context.py" in user_traceback(inner)
    demo = _raise_through(os.path.join(PACKAGE, "worker", "runner.py"), os.path.join(PACKAGE, "demo", "tasks.py"))
    assert os.path.join("demo", "tasks.py") in user_traceback(demo)


@pytest.fixture
def app() -> Orchestrator:
    return Orchestrator("redis://127.0.0.1:1/0")  # registers only


def test_verdicts(app: Orchestrator) -> None:
    @app.task(name="v", retry=RetryPolicy(max_retries=5), dont_retry=KeyError, retry_on=(LookupError, OSError))
    def v(a: int) -> None: ...

    assert verdict(IndexError("i"), v, [1], {})[0] is FailMode.RETRY  # in retry_on
    assert verdict(KeyError("k"), v, [1], {})[0] is FailMode.FATAL  # dont_retry wins
    assert verdict(ValueError("x"), v, [1], {})[0] is FailMode.FATAL  # not in retry_on
    assert verdict(FailNow("no"), None, [], {})[0] is FailMode.FATAL  # even for a bare function
    mode, record = verdict(TypeError("t"), v, [], {"b": 2})
    assert mode is FailMode.FATAL and record["message"].startswith("arguments do not fit task v(a): ")


def test_an_error_whose_text_is_not_utf8_is_still_recorded() -> None:
    name = b"caf\xe9.txt".decode("utf-8", "surrogateescape")  # how Python decodes such a file name
    try:
        open(f"/nonexistent/{name}")  # noqa: SIM115 - raises
    except FileNotFoundError as exc:
        record = error_record(exc)
    assert "caf\\udce9.txt" in record["message"]
    assert loads(dumps(record, "error")) == record
    with pytest.raises(orchestrator.NotSerializable, match="result is not JSON: str is not valid UTF-8"):
        dumps({"name": name}, "result")
