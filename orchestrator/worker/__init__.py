"""``orch worker``: the asyncio worker and its parts.

``worker`` is the Redis protocol (claim, heartbeat, commit, shutdown), ``runner`` how a
task function is called (loop, thread pool, process pool: ``pool``), ``pipeline`` the
coalescing commit path, ``registry`` importing the user's ``--app`` modules.
See ARCHITECTURE.md for the layers.
"""

from .worker import Worker, run_worker

__all__ = ["Worker", "run_worker"]
