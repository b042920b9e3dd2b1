"""What a running task can know about itself and tell: ``current_task()``.

Owns the context variable the worker sets around each task call. A task can read its
id, attempt and lease token, and pass the token to its own storage to fence side
effects (write only if no newer token has written); it can report its progress
(``progress`` / ``aprogress``), checked here and sent by the reporter its worker gave it
(``worker.progress``: the worker's own Redis connections, or a process-pool child's pipe
to its worker). Does not talk to Redis.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import ConfigurationError
from .models import MAX_PROGRESS_BYTES, encode_progress


class ProgressReporter(Protocol):
    """Sends a checked progress report of ``context``'s task (fraction text, JSON data)."""

    def report(self, context: TaskContext, fraction: str, data: bytes) -> None: ...

    async def areport(self, context: TaskContext, fraction: str, data: bytes) -> None: ...


@dataclass(frozen=True)
class TaskContext:
    id: str
    queue: str
    name: str
    attempt: int
    token: str  # the lease token: grows with every claim of the queue, so it fences writes
    worker: str
    reporter: ProgressReporter | None = field(default=None, repr=False, compare=False)

    def fields(self) -> dict[str, Any]:
        """The task's facts without the reporter (what a process-pool child is sent)."""
        return {"id": self.id, "queue": self.queue, "name": self.name, "attempt": self.attempt,
                "token": self.token, "worker": self.worker}

    def _checked(self, fraction: float, data: Any) -> tuple[ProgressReporter, str, bytes]:
        text, encoded = encode_progress(fraction, data, MAX_PROGRESS_BYTES)  # bad input: nothing is sent
        if self.reporter is None:
            raise ConfigurationError(f"task {self.id} has no worker to report its progress to", task_id=self.id)
        return self.reporter, text, encoded

    def progress(self, fraction: float, data: Any = None) -> None:
        """Record how far the task got: ``fraction`` from 0 to 1, ``data`` any JSON value
        (at most MAX_PROGRESS_BYTES encoded). One script call, fenced by the lease token:
        raises LeaseLost when this attempt no longer holds the task (stop working then),
        ValidationError, NotSerializable or PayloadTooLarge for bad input (nothing sent).
        Works from every pool; in ``async def`` code prefer ``await aprogress(...)`` (this
        one blocks the event loop for the round trip)."""
        reporter, text, encoded = self._checked(fraction, data)
        reporter.report(self, text, encoded)

    async def aprogress(self, fraction: float, data: Any = None) -> None:
        """``progress`` for ``async def`` tasks: the same, without blocking the loop."""
        reporter, text, encoded = self._checked(fraction, data)
        await reporter.areport(self, text, encoded)


_current: ContextVar[TaskContext | None] = ContextVar("orchestrator_current_task", default=None)


def current_task() -> TaskContext | None:
    """The task this code runs in (every pool), or None outside a task."""
    return _current.get()
