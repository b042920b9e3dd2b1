"""Problems a long-running process meets again and again: report each once per interval, go on.

Owns two decisions of the worker and the scheduler when a call about one queue fails:
whether the failure is that queue's alone (a corrupted queue-wide key, a script refusing
what it read, a reply that does not decode) so the other queues go on being served, or
the server's (unreachable, loading, read-only, out of memory, busy, cluster down), which the caller rides
out with its backoff; and how a queue's problem is logged: once when it appears, again at
most every ``REPEAT_S`` seconds while it lasts, and once when it clears. Does not retry
anything nor decide what to skip: the callers do.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import logging
import time

from redis.exceptions import BusyLoadingError, ClusterError, ReadOnlyError, ResponseError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError as RedisOutOfMemoryError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .errors import OutOfMemory, RedisUnavailable
from .sanitize import redis_error_text

REPEAT_S = 60.0  # a problem that lasts is logged again this often
SERVER_WIDE = (
    RedisConnectionError, RedisTimeoutError, OSError, RedisUnavailable,
    BusyLoadingError, ReadOnlyError, RedisOutOfMemoryError, OutOfMemory,
    ClusterError, TryAgainError,  # a Redis Cluster failing over or moving slots
)
_SERVER_WIDE_CODES = ("BUSY", "MASTERDOWN", "NOAUTH", "LOADING", "READONLY", "OOM", "CLUSTERDOWN", "TRYAGAIN")


def server_wide(exc: BaseException) -> bool:
    """True when ``exc`` says Redis as a whole is unavailable, not that one queue is broken."""
    if isinstance(exc, SERVER_WIDE):
        return True
    return isinstance(exc, ResponseError) and str(exc).split(" ", 1)[0] in _SERVER_WIDE_CODES


def describe(exc: BaseException) -> str:
    """One line for a failure: its kind and its text (a Redis error with its code word)."""
    text = redis_error_text(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Complaints:
    """The problems one process is currently reporting, by subject (a queue name, a key)."""

    def __init__(self, log: logging.Logger, tag: str, repeat_s: float = REPEAT_S) -> None:
        self.log = log
        self.tag = tag
        self.repeat_s = repeat_s
        self._last: dict[str, float] = {}

    def __contains__(self, subject: str) -> bool:
        return subject in self._last

    def __len__(self) -> int:
        return len(self._last)

    def report(self, subject: str, problem: str) -> bool:
        """Log ``problem`` of ``subject`` unless it was logged less than ``repeat_s`` ago.
        Returns whether it was logged."""
        now = time.monotonic()
        last = self._last.get(subject)
        if last is not None and now - last < self.repeat_s:
            return False
        self._last[subject] = now
        again = "" if last is None else " (still)"
        self.log.warning("%s %s%s: %s; serving the other queues", self.tag, subject, again, problem)
        return True

    def clear(self, subject: str) -> None:
        """``subject`` works again: say so once."""
        if self._last.pop(subject, None) is not None:
            self.log.warning("%s %s: working again", self.tag, subject)
