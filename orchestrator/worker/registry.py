"""Finding task functions: import the modules named by ``--app`` and collect their tasks.

Owns turning module names into a name -> function table. Does not run anything.
Only functions registered with ``@app.task`` can run: a task name read from Redis is
looked up here, never imported on demand (a queue must not run what a stranger wrote).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable
from typing import Any

from ..client import Orchestrator, TaskFunction
from ..errors import ConfigurationError


def load_apps(modules: Iterable[str]) -> dict[str, Callable[..., Any]]:
    """Import each module and return every registered task's function by task name."""
    if "" not in sys.path:
        sys.path.insert(0, "")  # like `python -m`: modules of the current directory import
    functions: dict[str, Callable[..., Any]] = {}
    for name in modules:
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # any import-time failure is a start-up error
            raise ConfigurationError(f"cannot import task module {name!r}: {type(exc).__name__}: {exc}") from None
        for value in vars(module).values():
            if isinstance(value, Orchestrator):
                functions.update({n: t.fn for n, t in value.registry.items()})
            elif isinstance(value, TaskFunction):
                functions[value.name] = value.fn
    return functions
