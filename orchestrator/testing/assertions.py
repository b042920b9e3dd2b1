"""Assertions on what is waiting to run: ``assert_enqueued``, ``assert_not_enqueued``, ``enqueued``.

Owns finding the tasks waiting to run (pending, or scheduled for later) that match a task
(a registered function or a name), its arguments and a queue, read through the operator
API (``app.queue(name).tasks(...)``), and the failure messages, which list what is
waiting. The app is the task function's, else the one given, else the current test's
``orch_app`` (``plugin``). Does not enqueue or run anything, nor build keys.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..client import Orchestrator, TaskFunction
from ..errors import ConfigurationError
from ..models import TaskState
from ..records import TaskInfo

WAITING = (TaskState.PENDING, TaskState.SCHEDULED)  # enqueued and not yet run
PAGE = 1000
MAX_PAGES = 20  # per queue and state: a test's queue is small; this bounds a runaway one
SHOWN = 20  # tasks listed in a failure message

TaskRef = TaskFunction[..., Any] | str

_current: list[Orchestrator] = []  # the running test's orch_app (set by the plugin)


def set_current_app(app: Orchestrator | None) -> None:
    """The app assertions use when given only a task name (the plugin sets its ``orch_app``)."""
    _current.clear()
    if app is not None:
        _current.append(app)


def enqueued(
    task: TaskRef | None = None,
    *,
    args: Sequence[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    queue: str | None = None,
    app: Orchestrator | None = None,
) -> list[TaskInfo]:
    """The tasks waiting to run (pending, then scheduled) that match; ``None`` matches anything.

    ``task``: a registered function or a task name; ``args`` and ``kwargs`` compare equal to
    what was enqueued (after JSON: tuples read as lists; ``unittest.mock.ANY`` matches
    anything); ``queue``: only that queue, else every known queue and every queue a
    registered task declares.
    """
    return [info for info in _waiting(_app(task, app), queue) if _matches(info, _name(task), args, kwargs)]


def assert_enqueued(
    task: TaskRef,
    *,
    args: Sequence[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    queue: str | None = None,
    count: int | None = None,
    app: Orchestrator | None = None,
) -> list[TaskInfo]:
    """Fail unless a matching task waits to run (exactly ``count`` of them, when given); returns them."""
    __tracebackhide__ = True  # pytest shows the caller's line, not this one
    found_app = _app(task, app)
    waiting = _waiting(found_app, queue)
    matching = [info for info in waiting if _matches(info, _name(task), args, kwargs)]
    if (count is None and not matching) or (count is not None and len(matching) != count):
        wanted = "a task" if count is None else f"{count} task{'' if count == 1 else 's'}"
        raise AssertionError(
            f"expected {wanted} {_described(task, args, kwargs, queue)} waiting to run; "
            f"found {len(matching)}.\n{_listing(waiting)}"
        )
    return matching


def assert_not_enqueued(
    task: TaskRef | None = None,
    *,
    args: Sequence[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    queue: str | None = None,
    app: Orchestrator | None = None,
) -> None:
    """Fail if a matching task waits to run (with no ``task``: if any task does)."""
    __tracebackhide__ = True
    waiting = _waiting(_app(task, app), queue)
    matching = [info for info in waiting if _matches(info, _name(task), args, kwargs)]
    if matching:
        what = _described(task, args, kwargs, queue) if task is not None else "task"
        raise AssertionError(f"expected no {what} waiting to run; found {len(matching)}.\n{_listing(waiting)}")


# ------------------------------------------------------------------ reading


def _app(task: TaskRef | None, app: Orchestrator | None) -> Orchestrator:
    if app is not None:
        return app
    if isinstance(task, TaskFunction):
        return task.app
    if _current:
        return _current[0]
    raise ConfigurationError(
        "no app to read: pass app=, a registered task function, or use the orch_app fixture", field="app"
    )


def _name(task: TaskRef | None) -> str | None:
    return task.name if isinstance(task, TaskFunction) else task


def _waiting(app: Orchestrator, queue: str | None) -> list[TaskInfo]:
    """Every task waiting to run in ``queue`` (else in every queue the app knows of)."""
    if queue is not None:
        names = [queue]
    else:
        names = sorted({*app.queues(), *(task.options.queue for task in app.registry.values())})
    found: list[TaskInfo] = []
    for name in names:
        q = app.queue(name)
        for state in WAITING:
            cursor: str | None = None
            for _ in range(MAX_PAGES):
                page = q.tasks(state, limit=PAGE, cursor=cursor)
                found += page.tasks
                cursor = page.cursor
                if cursor is None:
                    break
    return found


def _matches(info: TaskInfo, name: str | None, args: Sequence[Any] | None, kwargs: dict[str, Any] | None) -> bool:
    if name is not None and info.name != name:
        return False
    if args is not None and list(args) != (info.args or []):
        return False
    return kwargs is None or kwargs == (info.kwargs or {})


# ----------------------------------------------------------------- messages


def _described(
    task: TaskRef | None, args: Sequence[Any] | None, kwargs: dict[str, Any] | None, queue: str | None
) -> str:
    parts = [_name(task) or "task"]
    if args is not None:
        parts.append(f"args={list(args)!r}")
    if kwargs is not None:
        parts.append(f"kwargs={kwargs!r}")
    if queue is not None:
        parts.append(f"in queue {queue!r}")
    return " ".join(parts)


def _listing(waiting: list[TaskInfo]) -> str:
    if not waiting:
        return "Nothing is waiting to run (pending or scheduled)."
    lines = [f"Waiting to run ({len(waiting)}):"]
    for info in waiting[:SHOWN]:
        state = info.state.value.lower() if info.state is not None else "?"
        lines.append(
            f"  {info.name} args={info.args!r} kwargs={info.kwargs!r} ({state}, queue {info.queue}, id {info.id})"
        )
    if len(waiting) > SHOWN:
        lines.append(f"  ... and {len(waiting) - SHOWN} more")
    return "\n".join(lines)
