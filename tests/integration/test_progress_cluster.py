"""Progress and prompt results on a real Redis Cluster (3 masters): the task's channel is a
shard channel of its queue's slot, so SSUBSCRIBE, watch.lua and the ending script's
SPUBLISH all meet on the master that holds the queue.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from orchestrator import Orchestrator, TaskHandle
from tests.integration.test_cluster import spread
from tests.integration.test_progress import finish_later


def test_result_wakes_on_every_master(capp: Orchestrator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TaskHandle, "FALLBACK_POLL", 30.0)  # only the notice can wake it in time
    for queue in spread(capp.redis):
        handle = capp.enqueue("progress:steps", [1], queue=queue)
        thread = finish_later(capp, handle.id, 0.2, queue=queue)
        started = time.monotonic()
        assert handle.result(timeout=10) == "ok"
        assert time.monotonic() - started < 1.5, queue
        thread.join()
        assert handle.progress() is not None and handle.progress().fraction == 0.5


def test_aresult_wakes_on_every_master(capp: Orchestrator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TaskHandle, "FALLBACK_POLL", 30.0)
    for queue in spread(capp.redis):
        handle = capp.enqueue("progress:steps", [1], queue=queue)
        thread = finish_later(capp, handle.id, 0.2, queue=queue)

        async def wait(handle: TaskHandle[object] = handle) -> tuple[object, float]:
            started = time.monotonic()
            try:
                return await handle.aresult(timeout=10), time.monotonic() - started
            finally:
                await capp.aclose()

        value, took = asyncio.run(wait())
        assert value == "ok" and took < 1.5, queue
        thread.join()
