"""What a running task can know about itself: ``current_task()``.

Owns the context variable the worker sets around each task call. A task can read its
id, attempt and lease token, and pass the token to its own storage to fence side
effects (write only if no newer token has written). Does not talk to Redis.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class TaskContext:
    id: str
    queue: str
    name: str
    attempt: int
    token: str  # the lease token: grows with every claim of the queue, so it fences writes
    worker: str


_current: ContextVar[TaskContext | None] = ContextVar("orchestrator_current_task", default=None)


def current_task() -> TaskContext | None:
    """The task this code runs in (async and thread pools), or None outside a task."""
    return _current.get()
