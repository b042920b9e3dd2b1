"""The project's Orchestrator: one per process, imported by the tasks and by the code that enqueues."""

from __future__ import annotations

from orchestrator import Orchestrator

orch = Orchestrator()  # ORCH_REDIS_URL, else redis://localhost:6379/0
QUEUE = "orders"
