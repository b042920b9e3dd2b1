"""What every route is given: the ``Orchestrator`` a server was built on and its ``--app`` tasks.

Owns the FastAPI dependencies that read them from the application's state (set once by
``create_app``) and the lists of lower-case state names the routes accept. Does no I/O.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from fastapi import Depends, Path, Request

from ..client import Orchestrator
from ..task_function import TaskFunction

Registry = Mapping[str, TaskFunction[..., Any]]
# The states a page of tasks can list: TaskState names in lower case, and done (success and cancelled).
ListedState = Literal["pending", "scheduled", "retrying", "running", "success", "failed", "cancelled", "done"]


def orchestrator(request: Request) -> Orchestrator:
    found: Orchestrator = request.app.state.orchestrator
    return found


def registry(request: Request) -> Registry | None:
    found: Registry | None = request.app.state.registry
    return found


App = Annotated[Orchestrator, Depends(orchestrator)]
Tasks = Annotated[Registry | None, Depends(registry)]
QueueName = Annotated[str, Path(description="Queue name: 1-64 letters, digits, '_', '-' and '.'.")]
TaskId = Annotated[str, Path(description="Task id.")]

