"""``orch_clock``: the clock every script reads, moved by a test.

Owns ``Clock``: ``advance(seconds)`` moves an app's scripts' clock (Redis TIME plus the
app's ``clock_offset_ms``) forward, so delayed tasks, retry backoff, lease expiry and
periodic schedules come due without waiting; ``now()`` reads it. The offset applies to
every call the app makes after the move (``app.run_until_idle()``, enqueue, the operator
API). Does not run anything: the next ``run_until_idle()`` promotes what came due.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import datetime as dt

from ..client import Orchestrator
from ..errors import ValidationError
from ..reading import redis_time_ms


class Clock:
    """The scripts' clock of one app: ``advance(seconds)``, ``now()``, ``offset``."""

    def __init__(self, app: Orchestrator) -> None:
        self.app = app

    def __repr__(self) -> str:
        return f"Clock(offset={self.offset:g} s)"

    @property
    def offset(self) -> float:
        """Seconds the clock is ahead of Redis TIME."""
        return self.app.clock_offset_ms / 1000

    def advance(self, seconds: float | dt.timedelta) -> None:
        """Move the clock forward (never back: lease tokens and schedule ticks only grow)."""
        if isinstance(seconds, dt.timedelta):
            seconds = seconds.total_seconds()
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds >= 0:
            raise ValidationError(f"advance() takes seconds >= 0, not {seconds!r}", field="seconds")
        self.app.clock_offset_ms += round(seconds * 1000)

    def now_ms(self) -> int:
        """The scripts' time in Unix milliseconds: Redis TIME plus the offset."""
        return redis_time_ms(self.app.redis) + self.app.clock_offset_ms

    def now(self) -> dt.datetime:
        """The scripts' time as an aware UTC datetime."""
        return dt.datetime.fromtimestamp(self.now_ms() / 1000, tz=dt.timezone.utc)

    def reset(self) -> None:
        """Back to Redis TIME (the plugin does this after each test)."""
        self.app.clock_offset_ms = 0
