"""Testing your tasks: a pytest plugin and assertions over the real scripts.

Owns the public test helpers: the pytest plugin (``plugin``, loaded by its entry point:
fixtures ``orch_app``, ``orch_clock``, ``orch_user_app``), the movable clock (``clock``),
assertions on what is waiting to run (``assertions``: ``assert_enqueued``,
``assert_not_enqueued``, ``enqueued``) and where the test Redis comes from (``backend``).
A face: it goes through the API (``app.run_until_idle()``, the operator API), never
through a script or a key. Does not run tasks itself (``worker.drain``).
See ARCHITECTURE.md for the layers.
"""

from ..runs import TaskRun
from .assertions import assert_enqueued, assert_not_enqueued, enqueued
from .clock import Clock

__all__ = ["Clock", "TaskRun", "assert_enqueued", "assert_not_enqueued", "enqueued"]
