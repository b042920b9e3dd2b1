"""Finding task functions: import the modules named by ``--app`` and collect their tasks.

Owns turning module names into a name -> task table, and the start-up report of what a
worker can run (every task and its queue; a warning naming the declared queues the worker
does not serve). Does not run anything.
Only functions registered with ``@app.task`` can run: a task name read from Redis is
looked up here, never imported on demand (a queue must not run what a stranger wrote).
The working directory joins ``sys.path`` only when an ``--app`` module is found nowhere
else, at its end, and after the worker's own optional dependencies are imported: a
``uvloop.py`` lying in the directory a worker starts from is never executed.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from logging import Logger
from typing import Any

from ..errors import ConfigurationError
from ..operations import Operations
from ..task_function import TaskFunction

# Imported later than the task modules (the worker's event loop): imported first instead.
OPTIONAL_DEPENDENCIES = ("uvloop",)


def load_apps(modules: Iterable[str]) -> dict[str, Callable[..., Any]]:
    """Import each module and return every registered task's function by task name."""
    return {name: task.fn for name, task in load_tasks(modules).items()}


def load_tasks(modules: Iterable[str]) -> dict[str, TaskFunction[..., Any]]:
    """Import each module and return every registered task by task name."""
    modules = tuple(modules)
    _import_dependencies()
    _add_working_directory(modules)
    tasks: dict[str, TaskFunction[..., Any]] = {}
    for name in modules:
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # any import-time failure is a start-up error
            raise ConfigurationError(f"cannot import task module {name!r}: {type(exc).__name__}: {exc}") from None
        for value in vars(module).values():
            # An Orchestrator, known by its base: importing client here would close an import cycle
            # (Orchestrator.run_until_idle runs tasks through the worker, whose process pool loads these)
            if isinstance(value, Operations):
                tasks.update(value.registry)
            elif isinstance(value, TaskFunction):
                tasks[value.name] = value
    return tasks


def report_tasks(tasks: Mapping[str, TaskFunction[..., Any]], served: Sequence[str], tag: str, log: Logger) -> None:
    """Log, at start, each task the worker can run and its declared queue (as Celery does),
    and warn, naming them, about declared queues the worker does not serve: their tasks
    wait for another worker (or forever)."""
    if not tasks:
        log.warning("%s No tasks registered: pass --app with the module that defines them", tag)
        return
    log.info("%s Tasks (%d):", tag, len(tasks))
    for name in sorted(tasks):
        queue = tasks[name].options.queue
        log.info("%s   %s -> queue %s%s", tag, name, queue, "" if queue in served else " (not served here)")
    unserved = sorted({t.options.queue for t in tasks.values()} - set(served))
    if unserved:
        names = ", ".join(unserved)
        every = " any of" if all(t.options.queue in unserved for t in tasks.values()) else ""
        log.warning(
            "%s Queues %s declared by registered tasks are not served by this worker, which serves %s: "
            "add -q for each, or run a worker that serves them; this worker will not run%s their tasks",
            tag, names, ", ".join(served), every,
        )


def _import_dependencies() -> None:
    """Import what the worker imports after its task modules, before the working directory
    can stand in for it; one that is not installed stays absent (``import`` raises)."""
    for name in OPTIONAL_DEPENDENCIES:
        try:
            importlib.import_module(name)
        except ImportError:
            sys.modules.setdefault(name, None)  # type: ignore[arg-type]  # a later import raises ImportError


def _add_working_directory(modules: tuple[str, ...]) -> None:
    """Like ``python -m``, modules of the working directory import; but only when an
    ``--app`` module is not found otherwise, and behind every installed package."""
    cwd = os.getcwd()
    if cwd in sys.path or "" in sys.path:
        return
    for name in modules:
        try:
            found = importlib.util.find_spec(name.partition(".")[0]) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            sys.path.append(cwd)
            return
