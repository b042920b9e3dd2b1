"""A real worker for the recipe tests: ``orchestrator``'s own Worker, in a thread.

Owns starting a Worker on its own event loop in a thread of the test process (with its
own Orchestrator, since async clients belong to one loop), serving the tasks a recipe's
``app`` registered, and stopping it when the test is done. Does not assert anything
about the recipes: the tests do.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from orchestrator import Orchestrator, WorkerSettings
from orchestrator.worker.worker import Worker


@contextmanager
def running_worker(
    app: Orchestrator, *, concurrency: int = 4, queues: tuple[str, ...] = ("default",)
) -> Iterator[Worker]:
    """A Worker running ``app``'s registered tasks until the block ends."""
    settings = WorkerSettings(
        name="recipes-worker", concurrency=concurrency, grace=0, idle_wait=0.05,
        queues=tuple((q, 1) for q in queues),
    )
    worker = Worker(Orchestrator(settings=app.settings), settings, dict(app.registry))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(worker.run(),), daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        loop.call_soon_threadsafe(worker.stop)
        thread.join(15)
        assert not thread.is_alive(), "the worker did not stop"
        loop.close()
