"""redis-py's exceptions, as met by the producer API, turned into the OrchestratorError tree.

Owns one mapping, used by ``client`` and ``handle`` around every Redis call a producer
makes: unreachable Redis (refused, timeout, closed, loading) is RedisUnavailable, a full
Redis is OutOfMemory, any other error Redis answers with (auth, ACL, wrong database,
cluster) is RedisCommandError; redis-py's exception stays as ``__cause__``. Does not
retry: a producer's caller decides. Workers and the scheduler ride outages out themselves.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from redis import exceptions as redis_errors

from .errors import OrchestratorError, RedisCommandError, RedisUnavailable
from .sanitize import redis_error_text
from .script_calls import out_of_memory


def translate(exc: redis_errors.RedisError) -> OrchestratorError:
    """The OrchestratorError for one of redis-py's errors."""
    if isinstance(exc, redis_errors.AuthenticationError | redis_errors.AuthorizationError):
        return RedisCommandError(f"Redis refused the credentials: {exc}")
    if isinstance(exc, redis_errors.ConnectionError | redis_errors.TimeoutError):
        return RedisUnavailable(f"Redis is unavailable: {exc}")
    if isinstance(exc, redis_errors.OutOfMemoryError):
        return out_of_memory(exc)
    return RedisCommandError(f"Redis answered with an error: {redis_error_text(exc)}")  # MOVED kept


@contextmanager
def redis_calls() -> Iterator[None]:
    """Around producer calls (sync or async): redis-py's errors leave as OrchestratorErrors."""
    try:
        yield
    except redis_errors.RedisError as exc:
        raise translate(exc) from exc
