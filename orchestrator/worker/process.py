"""One ``orch worker`` process: what happens before and around the worker's loop.

Owns starting a worker the way the command line does: the task table (registered and
``--app`` tasks) reported at start, the first contact with Redis and the server checks
(a permanent error stops the process here), the event loop (uvloop when installed or
asked, else asyncio), SIGTERM/SIGINT (stop claiming; a second signal exits at once) and
the exit. Does not claim, run or commit anything (``worker``).
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from ..client import Orchestrator
from ..config import WorkerSettings
from ..errors import ConfigurationError
from ..health import first_contact, startup_checks
from ..sanitize import get_logger
from .registry import load_tasks, report_tasks
from .worker import Worker

log = get_logger("orchestrator.worker.worker")  # the worker's own lines, under the name they always had


def _run_loop(main: Callable[[], Coroutine[Any, Any, None]], loop: str) -> None:
    """``asyncio.run(main())``, on uvloop when asked or (auto) when installed: on uvloop a
    worker spends about a quarter less CPU per task (thread-pool hand-offs, sockets, timers)."""
    if loop != "asyncio":
        try:
            import uvloop
        except ImportError:
            if loop == "uvloop":
                raise ConfigurationError("--loop uvloop: uvloop is not installed (pip install uvloop)") from None
        else:
            uvloop.run(main())
            return
    asyncio.run(main())


def run_worker(app: Orchestrator, settings: WorkerSettings) -> int:
    """Run a worker until SIGTERM/SIGINT (a second signal exits at once). Returns the exit code."""
    import signal

    tasks = {**app.registry, **load_tasks(settings.apps)}
    worker = Worker(app, settings, tasks)
    tag = f"[Worker {worker.id}]"
    first_contact(app.redis, tag=tag, log=log)
    startup_checks(app.redis, strict=settings.strict, tag=tag, log=log)
    report_tasks(tasks, [q for q, _ in settings.queues], tag, log)

    async def main() -> None:
        loop = asyncio.get_running_loop()

        def on_signal(signum: int) -> None:
            if worker.stopping:
                log.warning("[Worker %s] Second signal: exiting now; leases will expire", worker.id)
                logging.shutdown()
                os._exit(1)
            worker.stop()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal, signum)
        await worker.run()

    _run_loop(main, settings.loop)
    if any(t.name.startswith("orch-") and t.is_alive() for t in threading.enumerate()):
        # A sync task is stuck in a thread that cannot be interrupted: do not hang on exit.
        logging.shutdown()
        os._exit(0)
    return 0
