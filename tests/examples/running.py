"""What the recipe tests run the examples on: their app pointed at the suite's Redis, a
real worker, and uvicorn.

Owns pointing an example's module-level ``Orchestrator`` at the test's redis-server for
one test (``pointed_at``), starting a Worker on its own event loop in a thread of the test
process (with its own Orchestrator, since async clients belong to one loop) serving the
tasks the example registered (``running_worker``), and serving an ASGI app on a free port
(``serving``). Does not assert anything about the recipes: the tests do.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from orchestrator import Orchestrator, Settings, WorkerSettings
from orchestrator.redis_local import free_port
from orchestrator.worker.registry import load_tasks
from orchestrator.worker.worker import Worker
from tests.integration.procs import wait_for


@contextmanager
def pointed_at(app: Orchestrator, redis_url: str) -> Iterator[Orchestrator]:
    """``app`` (an example's own, built from ORCH_REDIS_URL at import) on ``redis_url`` for a while."""
    original = app.settings
    app.close()
    app.settings = Settings(**{**original.model_dump(), "redis_url": redis_url})
    try:
        yield app
    finally:
        app.close()
        app.settings = original


@contextmanager
def serving(asgi_app: Any) -> Iterator[str]:
    """``asgi_app`` on uvicorn on a free port (its lifespan run) until the block ends; yields its URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(asgi_app, host="127.0.0.1", port=port, log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, "uvicorn to start", 20)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        assert not thread.is_alive(), "uvicorn did not stop"


@contextmanager
def running_worker(
    app: Orchestrator, module: str, *, concurrency: int = 4, queues: tuple[str, ...] = ("default",)
) -> Iterator[Worker]:
    """A Worker running the tasks of ``module`` (found as ``orch worker --app MODULE`` finds
    them) on ``app``'s Redis until the block ends."""
    settings = WorkerSettings(
        name="recipes-worker", concurrency=concurrency, grace=0, idle_wait=0.05,
        queues=tuple((q, 1) for q in queues),
    )
    worker = Worker(Orchestrator(settings=app.settings), settings, load_tasks([module]))
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
