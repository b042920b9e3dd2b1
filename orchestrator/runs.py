"""``TaskRun``: one attempt that ``app.run_until_idle()`` ran, and how it ended.

Owns the small typed record a test reads (id, name, queue, attempt, the state the attempt
left the task in, its result or its error), built from the task's record as stored after
the attempt. Does not run anything (``worker.drain``) nor read Redis.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .models import TaskState
from .records import TaskInfo


@dataclass(frozen=True)
class TaskRun:
    """One attempt: ``state`` is what it left the task in (SUCCESS, RETRYING, FAILED, CANCELLED;
    None when the record is gone), ``result`` its return value (SUCCESS), ``error`` its error
    record ``{type, message, traceback}`` (RETRYING, FAILED)."""

    id: str
    name: str
    queue: str
    attempt: int
    state: TaskState | None
    result: Any = None
    error: dict[str, Any] | None = None

    @classmethod
    def of(cls, task_id: str, name: str, queue: str, attempt: int, info: TaskInfo | None) -> TaskRun:
        if info is None:
            return cls(task_id, name, queue, attempt, None)
        failed = info.state is not TaskState.SUCCESS
        return cls(task_id, name, queue, attempt, info.state, info.result, info.error if failed else None)

    @property
    def ok(self) -> bool:
        return self.state is TaskState.SUCCESS

    def __repr__(self) -> str:
        state = self.state.value if self.state is not None else "gone"
        end = f"result={self.result!r}" if self.ok else f"error={_brief(self.error)}"
        return f"TaskRun({self.name} {self.id} attempt {self.attempt}: {state}, {end})"


def _brief(error: dict[str, Any] | None) -> str:
    if not error:
        return "None"
    return f"{error.get('type')}: {error.get('message')}"
