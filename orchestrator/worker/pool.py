"""A process pool that can kill one task: for ``orch worker --pool process``.

Owns child processes that each run one task at a time. Messages cross the pipe as
JSON (no pickle of payloads); a task's progress reports come up the same pipe and are
answered on it (``progress``) while the task runs. A task that passes its timeout has its child killed and
replaced; a child that dies mid-task (segfault, os._exit, OOM kill) is replaced and the
task's attempt fails with ``ProcessCrashed``. Does not talk to Redis.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import multiprocessing
import os
import signal
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import orjson

from ..context import TaskContext
from ..errors import ProcessCrashed
from ..errors import RemoteError as RemoteError  # re-exported: the worker catches it from here
from .progress import PROGRESS, answer


def _child_main(conn: Connection, apps: tuple[str, ...], parent: int) -> None:
    from ..context import TaskContext, _current
    from ..models import dumps
    from ..redis_local import die_with_parent
    from .outcome import verdict
    from .progress import PipeReporter
    from .registry import load_tasks

    # A child of a worker that was killed -9 must not go on running (or start) tasks whose
    # leases are gone: on Linux the kernel kills it with its parent, elsewhere it checks.
    die_with_parent(signal.SIGKILL)
    tasks = load_tasks(apps)
    while True:
        try:
            message = orjson.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        if os.getppid() != parent:
            return
        task = tasks.get(message["name"])
        args, kwargs = message["args"], message["kwargs"]
        try:
            if task is None:
                raise KeyError(message["name"])
            if message.get("context"):
                _current.set(TaskContext(**message["context"], reporter=PipeReporter(conn)))
            result = task.fn(*args, **kwargs)
            if inspect.isawaitable(result):
                result = asyncio.run(_await(result))
            reply = b'{"ok":' + dumps(result, "result") + b"}"
        except BaseException as exc:
            mode, record = verdict(exc, task, args, kwargs)
            reply = orjson.dumps({"error": {**record, "mode": mode}})
        try:
            conn.send_bytes(reply)
        except OSError:  # the worker is gone (BrokenPipeError): nothing to report to
            return


async def _await(awaitable: Any) -> Any:
    return await awaitable


class _Child:
    def __init__(self, ctx: Any, apps: tuple[str, ...]) -> None:
        parent, child = ctx.Pipe()
        self.conn: Connection = parent
        self.process: BaseProcess = ctx.Process(target=_child_main, args=(child, apps, os.getpid()), daemon=True)
        self.process.start()
        child.close()

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()


class ProcessPool:
    """``size`` child processes; ``run`` sends a task to an idle one and awaits the answer."""

    def __init__(self, size: int, apps: tuple[str, ...]) -> None:
        self._ctx = multiprocessing.get_context("spawn")
        self._apps = apps
        self._idle: asyncio.Queue[_Child] = asyncio.Queue()
        self._all: set[_Child] = set()
        for _ in range(size):
            self._add()

    def _add(self) -> None:
        child = _Child(self._ctx, self._apps)
        self._all.add(child)
        self._idle.put_nowait(child)

    async def run(
        self,
        name: str,
        args: list[Any],
        kwargs: dict[str, Any],
        timeout: float | None,
        context: TaskContext | None = None,
    ) -> Any:
        child = await self._idle.get()
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future[bytes] = loop.create_future()
        reports: set[asyncio.Task[None]] = set()

        def readable() -> None:
            try:
                data = child.conn.recv_bytes()
            except (EOFError, OSError) as exc:
                loop.remove_reader(child.conn.fileno())
                outcome.set_exception(ProcessCrashed(f"task process exited ({exc or 'EOF'})"))
                return
            if context is not None and data.startswith(b'{"%s":' % PROGRESS.encode()):  # the task reports progress
                report = loop.create_task(answer(child.conn, context, orjson.loads(data)))
                reports.add(report)
                report.add_done_callback(reports.discard)
                return
            loop.remove_reader(child.conn.fileno())
            outcome.set_result(data)

        healthy = False
        try:
            fields = None if context is None else context.fields()
            message = {"name": name, "args": args, "kwargs": kwargs, "context": fields}
            child.conn.send_bytes(orjson.dumps(message))
            loop.add_reader(child.conn.fileno(), readable)
            try:
                data = await asyncio.wait_for(outcome, timeout)
            finally:
                with contextlib.suppress(Exception):
                    loop.remove_reader(child.conn.fileno())
            healthy = True
        finally:
            if healthy:
                self._idle.put_nowait(child)
            else:  # timed out, cancelled or crashed: the child may be mid-task, replace it
                self._all.discard(child)
                child.kill()
                self._add()
        reply = orjson.loads(data)
        if "error" in reply:
            raise RemoteError(reply["error"])
        return reply["ok"]

    def close(self) -> None:
        for child in list(self._all):
            child.kill()
        self._all.clear()
