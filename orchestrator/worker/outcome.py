"""What an attempt's error means: retried or failed at once, and the error record kept.

Owns the verdict on an exception a task function raised (its ``dont_retry`` / ``retry_on``,
``FailNow``, a call whose arguments do not fit the function's signature, a result that
is not JSON) and the error record ``{type, message, traceback}``, whose traceback shows
the task's own frames, not the library's or the executor's that called it. Used by the
worker and by its process-pool children. Does no I/O and does not send the outcome.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import traceback
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import Any

from ..errors import Deadline, FailNow, InvalidPayload, NotSerializable, RemoteError, UnknownTask
from ..models import FailMode
from ..task_function import TaskFunction
from ..transitions import Lease

RETRY = FailMode.RETRY  # fail.lua: retry while attempts remain
FATAL = FailMode.FATAL  # fail.lua: FAILED at once

# Frames that call a task rather than belong to it: ours, and the executors'.
_CALLERS = (
    os.path.dirname(os.path.dirname(__file__)) + os.sep,  # orchestrator/
    os.path.dirname(asyncio.__file__) + os.sep,
    os.path.dirname(concurrent.futures.__file__) + os.sep,
    threading.__file__,
)


_DEMO = os.path.join(_CALLERS[0], "demo") + os.sep  # `orch demo`'s tasks are task code


def _theirs(frames: traceback.StackSummary) -> traceback.StackSummary:
    """``frames`` from the first one that is not the library's or an executor's."""
    for i, frame in enumerate(frames):
        if not frame.filename.startswith(_CALLERS) or frame.filename.startswith(_DEMO):
            return traceback.StackSummary.from_list(frames[i:])
    return traceback.StackSummary()


def user_traceback(exc: BaseException) -> str:
    """``exc`` formatted as Python would, its chain included, without the calling frames."""
    report = traceback.TracebackException.from_exception(exc)
    seen: set[int] = set()
    todo: list[traceback.TracebackException | None] = [report]
    while todo:
        part = todo.pop()
        if part is None or id(part) in seen:
            continue
        seen.add(id(part))
        part.stack = _theirs(part.stack)
        todo += [part.__cause__, part.__context__]
    return "".join(report.format())


def error_record(exc: BaseException, message: str | None = None, kind: str | None = None) -> dict[str, str]:
    return {
        "type": kind or type(exc).__name__,
        "message": utf8(message if message is not None else str(exc)),
        "traceback": utf8(user_traceback(exc)),
    }


def utf8(text: str) -> str:
    """``text`` as UTF-8 can carry it: a lone surrogate (a file name decoded with
    surrogateescape, say) becomes a ``\\udcxx`` escape instead of making the record unstorable."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()
    return text


def timeout_record(exc: BaseException, message: str, stack: FrameType | None = None) -> dict[str, str]:
    """A TaskTimeout: where the task was when its deadline fired, not where the deadline is kept.

    ``stack``: the frame a thread was running at that moment (a thread is not stopped,
    so its exception holds nothing). An async task's frames are in the CancelledError
    that stopped it. A killed child process leaves none: the message alone then.
    """
    frames = traceback.StackSummary()
    if stack is not None:
        frames = _theirs(traceback.extract_stack(stack))
    else:
        cancelled = _cancelled_in(exc)
        if cancelled is not None:
            frames = _theirs(traceback.extract_tb(cancelled.__traceback__))
    shown = f"Traceback (most recent call last):\n{''.join(frames.format())}" if frames else ""
    return {"type": "TaskTimeout", "message": message, "traceback": utf8(f"{shown}TaskTimeout: {message}\n")}


def _cancelled_in(exc: BaseException) -> BaseException | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, asyncio.CancelledError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def judge(
    exc: BaseException, task: TaskFunction[..., Any] | None, lease: Lease, elapsed: float, stack: FrameType | None
) -> tuple[FailMode, dict[str, str]]:
    """(fail.lua mode, error record) for an attempt that raised ``exc`` after ``elapsed`` seconds.

    A timeout is retried while attempts remain; a process-pool child's error comes judged
    (``verdict`` ran there); an unknown name or arguments that do not decode fail at once;
    anything else is the task's ``verdict``. ``stack``: see ``timeout_record``.
    """
    timeout = lease.timeout_ms / 1000 or None
    if isinstance(exc, Deadline):
        return RETRY, timeout_record(exc, str(exc), stack)
    if isinstance(exc, asyncio.TimeoutError | TimeoutError) and timeout is not None and elapsed >= timeout - 0.002:
        return RETRY, timeout_record(exc, f"task timed out after {timeout:g} s", stack)  # 3.10: wait_for's own
    if isinstance(exc, RemoteError):
        record = dict(exc.record)
        return (FATAL if record.pop("mode", RETRY) == FATAL else RETRY), record
    if isinstance(exc, UnknownTask | InvalidPayload):  # fails the task, not the worker; `orch retry` brings it back
        return FATAL, error_record(exc)
    return verdict(exc, task, lease.args, lease.kwargs)


def verdict(
    exc: BaseException, task: TaskFunction[..., Any] | None, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> tuple[FailMode, dict[str, str]]:
    """(fail.lua mode, error record) for an exception the task function raised.

    Failed at once: FailNow; a TypeError from a call whose arguments do not fit the
    function (the same call fails the same way); a result that is not JSON; what the
    task's ``dont_retry`` names or its ``retry_on`` does not. Anything else is retried.
    """
    if isinstance(exc, FailNow | NotSerializable):
        return FATAL, error_record(exc)
    if task is None:
        return RETRY, error_record(exc)
    if isinstance(exc, TypeError):
        problem = task.arguments.problem(args, kwargs)
        if problem is not None:
            message = f"arguments do not fit task {task.name}{task.arguments.shown}: {problem}"
            return FATAL, {"type": "TypeError", "message": utf8(message), "traceback": ""}
    return (RETRY if task.options.retryable(exc) else FATAL), error_record(exc)
