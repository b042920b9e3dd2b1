"""How a task's progress report reaches Redis: the reporter a worker puts in each TaskContext.

Owns ``Reporter`` (one progress.lua call under the task's lease token, over the worker's
own clients: the async one for ``aprogress``, the sync one for ``progress``, which a
pool thread may block on) and the two halves of a process-pool child's report: the child
sends it over its pipe and waits (``PipeReporter``), the worker sends it and answers
(``answer``), so a child needs no Redis client or credentials of its own. Does not check
the report (``context``) nor run tasks (``runner``, ``pool``).
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import contextlib
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

import orjson

from .. import errors
from ..context import TaskContext
from ..models import MAX_PROGRESS_BYTES
from ..redis_calls import redis_calls
from ..script_calls import Call, arun, run

if TYPE_CHECKING:
    from ..client import Orchestrator


class Reporter:
    """Sends the progress reports of the tasks one worker runs."""

    def __init__(self, app: Orchestrator) -> None:
        self.app = app

    def _call(self, context: TaskContext, fraction: str, data: bytes) -> Call[int]:
        scripts = self.app._scripts(context.queue)
        return scripts.progress(context.id, context.token, fraction, data, max_bytes=MAX_PROGRESS_BYTES)

    def report(self, context: TaskContext, fraction: str, data: bytes) -> None:
        # The sync client: thread-safe (a pool thread blocks for one round trip); on the
        # event loop's own thread it blocks the loop as long (aprogress does not).
        with redis_calls():
            run(self.app.redis, self._call(context, fraction, data))

    async def areport(self, context: TaskContext, fraction: str, data: bytes) -> None:
        with redis_calls():
            await arun(self.app.aredis, self._call(context, fraction, data))


# ------------------------------------------------------------------ process-pool children

PROGRESS = "progress"  # the key of a child's report on its pipe (its task's answer has "ok" or "error")


class PipeReporter:
    """A process-pool child's reporter: hands the report to its worker and waits for the answer."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def report(self, context: TaskContext, fraction: str, data: bytes) -> None:
        self.conn.send_bytes(orjson.dumps({PROGRESS: fraction, "data": data.decode()}))
        answer = orjson.loads(self.conn.recv_bytes())
        if "error" in answer:
            raise rebuild(answer["error"])

    async def areport(self, context: TaskContext, fraction: str, data: bytes) -> None:
        self.report(context, fraction, data)  # a child runs one task at a time: blocking is fine


async def answer(conn: Connection, context: TaskContext, message: dict[str, Any]) -> None:
    """Send a child's report (``message``) for its task and write the outcome back to it."""
    try:
        if context.reporter is None:
            raise errors.ConfigurationError("no reporter for this task's progress", task_id=context.id)
        await context.reporter.areport(context, str(message[PROGRESS]), str(message["data"]).encode())
        reply: dict[str, Any] = {"ok": True}
    except errors.OrchestratorError as exc:
        reply = {"error": exc.to_dict()}
    with contextlib.suppress(OSError):  # the child is gone (killed at its timeout): nobody to answer
        conn.send_bytes(orjson.dumps(reply))


def rebuild(record: dict[str, str]) -> errors.OrchestratorError:
    """The OrchestratorError a worker sent back (``to_dict``), as its own class when known."""
    kind = getattr(errors, str(record.get("error")), None)
    if not (isinstance(kind, type) and issubclass(kind, errors.OrchestratorError)) or kind in (
        errors.TaskFailed, errors.PartiallyEnqueued, errors.RemoteError,  # (other constructors)
    ):
        kind = errors.OrchestratorError
    fields = {name: record.get(name) for name in ("code", "task_id", "queue", "state", "field")}
    return kind(str(record.get("message", "")), **fields)
