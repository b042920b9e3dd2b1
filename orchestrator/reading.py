"""Reading values back from Redis: defined once, defensive where the data is untrusted.

Owns turning what Redis returns (bytes, strings, scores) into text, integers and UTC
times, the server-clock helpers, and the tuples of redis-py errors that mean "Redis
could not be reached" and "ride this out". Anyone with write access to ``orch:*`` can put anything in a
record, so the lenient readers never raise: a value that does not parse becomes None
(the caller shows it as missing and says so). Does no I/O except the two clock reads.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone
from typing import Any

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

# redis-py's errors for "the server could not be reached or the connection broke".
UNREACHABLE: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError)
# What a long-running process (worker, scheduler) rides out with a backoff: Redis unreachable,
# or refusing for now (BUSY while a long script runs, READONLY after a failover, OOM). The
# scripts' own error codes never get here: transitions maps them to OrchestratorError first.
RIDE_OUT: tuple[type[Exception], ...] = (*UNREACHABLE, ResponseError, OSError)

MAX_INT = 2**53 - 1  # larger integers are not exact in Lua or in Redis
_CANONICAL_INT = re.compile(r"0|-?[1-9][0-9]{0,15}")
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MAX_MS = 253402300799999  # 9999-12-31T23:59:59.999Z: the last instant a datetime can hold


def text(value: object, errors: str = "replace") -> str:
    """A Redis reply as text; bytes that are not UTF-8 never raise (U+FFFD stands in) unless
    ``errors="strict"`` (UnicodeDecodeError: a caller that must refuse such a value)."""
    if isinstance(value, bytes):
        return value.decode(errors=errors)
    return value if isinstance(value, str) else str(value)


def to_int(value: Any) -> int | None:
    """A canonical decimal integer within ±MAX_INT (``"42"``, ``"-3"``), else None (``"abc"``,
    ``"1e3"``, ``"007"``, ``" 4"``, ``""``): what the scripts write, and nothing else."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if abs(value) <= MAX_INT else None
    if isinstance(value, bytes | str):
        raw = text(value)
        if _CANONICAL_INT.fullmatch(raw) and abs(number := int(raw)) <= MAX_INT:
            return number
    return None


def to_float(value: Any) -> float | None:
    """A finite number (``"0.25"``, ``"3"``), else None (``"nan"``, ``"inf"``, ``"abc"``)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(text(value) if isinstance(value, bytes) else value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def ms_to_datetime(ms: Any) -> datetime | None:
    """Milliseconds since the epoch (int, float or string) as an aware UTC datetime, else None."""
    number = to_float(ms)
    if number is None or not 0 <= number <= _MAX_MS:
        return None
    return EPOCH + timedelta(milliseconds=int(number))


def iso(moment: datetime | None) -> str | None:
    """``2026-12-03T09:00:00.000Z``: ISO 8601 UTC, milliseconds, as every face prints times."""
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def redis_time_ms(client: Redis) -> int:
    """The Redis server's clock in integer milliseconds (the only clock the queue uses)."""
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def aredis_time_ms(client: AsyncRedis) -> int:
    seconds, micros = await client.time()
    return int(seconds) * 1000 + int(micros) // 1000
