"""``orch worker``: the asyncio worker and its parts.

``worker`` is the Redis protocol (claim, heartbeat, shutdown; ``commit`` sends an
attempt's outcome under its lease token), ``process`` one
worker process around it (checks at start, event loop, signals), ``runner`` how a task
function is called (loop, thread pool, process pool: ``pool``), ``pipeline`` the
coalescing commit path, ``registry`` importing the user's ``--app`` modules, ``outcome``
what an attempt's error means, ``cancels`` cancel requests as they are made.
See ARCHITECTURE.md for the layers.
"""

from .process import run_worker
from .worker import Worker

__all__ = ["Worker", "run_worker"]
