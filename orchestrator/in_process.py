"""What a test needs of an app: run the due tasks here, move the scripts' clock, point it elsewhere.

Owns the ``InProcess`` mixin of ``Orchestrator``: ``run_until_idle()`` (and its async twin)
runs the due tasks in this process through the worker's and the scheduler's own code
(``worker.drain``), ``clock_offset_ms`` moves the clock every script reads (Redis TIME
plus the offset) without rebuilding the app, and ``reconnect(settings)`` points an app
(a user's module-level one) at another Redis. The pytest plugin (``testing``) is built on
these. Does not run tasks itself nor read records (``worker.drain``, ``runs``).
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

from .errors import ConfigurationError
from .known_queues import aknown_queues
from .runs import TaskRun

if TYPE_CHECKING:
    from redis import Redis
    from redis.asyncio import Redis as AsyncRedis

    from .client import Orchestrator
    from .config import Settings
    from .task_function import TaskFunction
    from .transitions import Transitions

DEFAULT_MAX_TASKS = 1000  # attempts one run_until_idle runs at most (a task that enqueues itself ends)


class InProcess:
    """Mixin of ``Orchestrator``: in-process runs and the movable clock, for tests."""

    if TYPE_CHECKING:  # what it uses of Orchestrator
        settings: Settings
        registry: dict[str, TaskFunction[..., Any]]
        _clock_offset_ms: int
        _transitions: dict[str, Transitions]
        _registered: dict[str, float]
        _redis: Redis | None
        _aredis: AsyncRedis | None

        @property
        def aredis(self) -> AsyncRedis: ...

        def close(self) -> None: ...

    # ------------------------------------------------------------------ clock

    @property
    def clock_offset_ms(self) -> int:
        """Milliseconds every script adds to Redis TIME: delays, retry backoff, lease expiry and
        schedules all read this clock. Setting it moves the clock for every call made after."""
        return self._clock_offset_ms

    @clock_offset_ms.setter
    def clock_offset_ms(self, offset: int) -> None:
        if isinstance(offset, bool) or not isinstance(offset, int):
            raise ConfigurationError(f"clock_offset_ms must be an integer, not {offset!r}", field="clock_offset_ms")
        self._clock_offset_ms = offset
        for transitions in self._transitions.values():
            transitions.clock_offset_ms = offset

    # -------------------------------------------------------------- reconnect

    def reconnect(self, settings: Settings) -> None:
        """Use ``settings`` (another Redis, say) from now on: the clients are closed and made
        again on first use. Tests point a user's module-level app at their private server."""
        self.close()
        self._aredis = None  # bound to a loop that may be gone: dropped, not awaited
        self.settings = settings
        self._transitions.clear()
        self._registered.clear()

    # ------------------------------------------------------------------- runs

    def run_until_idle(self, max_tasks: int = DEFAULT_MAX_TASKS, queues: Iterable[str] | None = None) -> list[TaskRun]:
        """Run the due tasks in this process until none is left; what each attempt came to, in order.

        Each task goes through the production scripts (claim, then complete or fail under
        its lease token) and the worker's own code (``current_task()`` set, its timeout,
        its retry policy), one at a time, lowest priority value first. Delayed and retrying
        tasks run once due by the scripts' clock (move it: ``clock_offset_ms``), periodic
        schedules fire, expired leases are reaped. ``queues``: default every known queue and
        every queue a registered task declares. Stops after ``max_tasks`` attempts.
        Sync tasks run in a thread, async ones on the loop this call starts (inside a
        running loop use ``await arun_until_idle()``).
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise ConfigurationError("run_until_idle() called inside a running event loop: use await arun_until_idle()")
        held, self._aredis = self._aredis, None  # an async client is bound to its loop: this run gets its own
        try:
            return asyncio.run(self._run_then_close(max_tasks, queues))
        finally:
            self._aredis = held

    async def _run_then_close(self, max_tasks: int, queues: Iterable[str] | None) -> list[TaskRun]:
        try:
            return await self.arun_until_idle(max_tasks, queues)
        finally:
            if self._aredis is not None:
                await self._aredis.aclose()
                self._aredis = None

    async def arun_until_idle(
        self, max_tasks: int = DEFAULT_MAX_TASKS, queues: Iterable[str] | None = None
    ) -> list[TaskRun]:
        """``run_until_idle`` on the running loop."""
        from .worker.drain import DrainingWorker  # the worker imports client, which imports this

        if isinstance(max_tasks, bool) or not isinstance(max_tasks, int) or max_tasks < 1:
            raise ConfigurationError(f"max_tasks must be a positive integer, not {max_tasks!r}", field="max_tasks")
        if queues is None:
            known = await aknown_queues(self.aredis, self.settings.prefix)
            found = {*known.names, *(task.options.queue for task in self.registry.values())}
            names = sorted(found) or ["default"]
        else:
            names = list(dict.fromkeys([queues] if isinstance(queues, str) else queues))
        return await DrainingWorker(cast("Orchestrator", self), names).drain(max_tasks)
