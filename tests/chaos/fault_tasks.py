"""Task functions for tests/chaos/test_faults.py, run by real ``orch worker`` processes.

Poison pills that take their whole worker down with them (the thread pool shares the
worker's process), and a quick task to prove a worker is healthy. ``ORCH_REDIS_URL``
names the test's private server.
"""

from __future__ import annotations

import ctypes
import os

from orchestrator import Orchestrator

app = Orchestrator()


@app.task(name="faults:exit")
def exit_process() -> None:
    os._exit(17)


@app.task(name="faults:segfault")
def segfault() -> None:
    ctypes.string_at(0)  # reads address 0: SIGSEGV


@app.task(name="faults:ok")
def ok(value: int) -> int:
    return value
