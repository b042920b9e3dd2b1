"""Text that leaves the process: what is logged or printed must not carry a secret or a forged line.

Owns the three rules every message follows: a Redis URL is shown without its password
(``redact_url``, ``redact``); a value read from Redis is escaped before it is logged, so a
task name holding a newline cannot forge a log line (``escape``, ``get_logger``); a Redis
error keeps the code word redis-py strips from it (``MOVED``, ``CLUSTERDOWN``), so a user
sees they pointed at a cluster (``redis_error_text``). Does not configure logging: the
application does; ``get_logger`` only adds a filter to the library's own loggers.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote

from redis.exceptions import (
    AskError,
    BusyLoadingError,
    ClusterCrossSlotError,
    ClusterDownError,
    MasterDownError,
    MovedError,
    NoPermissionError,
    ReadOnlyError,
    TryAgainError,
)
from redis.sentinel import MasterNotFoundError

MASK = "***"
# user:password@ in the authority part, whatever follows it (a URL too broken to parse included)
_USERINFO = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^/?#@:]*:)(?P<secret>[^/?#]*)@")
_QUERY_SECRET = re.compile(r"(?P<head>[?&](?:\w+_)?(?:password|pass|pwd)=)(?P<secret>[^&#]*)", re.IGNORECASE)
# redis-py turns "MOVED 1234 host:port" into MovedError("1234 host:port"): the word is the message.
_CODES: tuple[tuple[type[Exception], str], ...] = (  # subclasses before their bases
    (MovedError, "MOVED"),
    (AskError, "ASK"),
    (MasterDownError, "MASTERDOWN"),
    (ClusterDownError, "CLUSTERDOWN"),
    (ClusterCrossSlotError, "CROSSSLOT"),
    (TryAgainError, "TRYAGAIN"),
    (ReadOnlyError, "READONLY"),
    (BusyLoadingError, "LOADING"),
    (NoPermissionError, "NOPERM"),
)
_CLUSTER = ("MOVED", "ASK", "CLUSTERDOWN", "CROSSSLOT", "TRYAGAIN", "MASTERDOWN")


def redact_url(url: str) -> str:
    """``url`` with its password (in ``user:password@`` or ``?password=``) replaced by ``***``.

    Works on text, not on a parsed URL: a URL too malformed to parse is redacted too.
    """
    url = _USERINFO.sub(lambda m: m["head"] + MASK + "@", url, count=1)
    return _QUERY_SECRET.sub(lambda m: m["head"] + MASK, url)


def secrets_of(url: str) -> list[str]:
    """The passwords ``url`` carries, as written in it (for scrubbing other text)."""
    found = [m["secret"] for m in [_USERINFO.match(url)] if m and m["secret"]]
    found += [m["secret"] for m in _QUERY_SECRET.finditer(url) if m["secret"]]
    query = url.partition("?")[2]
    found += [v for k, v in parse_qsl(query, keep_blank_values=False) if k.lower() in ("password", "pass", "pwd") and v]
    return found + [unquote(s) for s in found if unquote(s) != s]


def redact(text: str, url: str) -> str:
    """``text`` with ``url`` redacted and every password of ``url`` masked wherever it appears."""
    text = text.replace(url, redact_url(url)) if url else text
    for secret in sorted(set(secrets_of(url)), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def escape(value: object) -> str:
    """``value`` as one printable line: control, format and separator characters become
    ``\\n``, ``\\x1b``, ``\\u2028``...; bytes that are not UTF-8 become ``\\xNN``."""
    text = value.decode("utf-8", "backslashreplace") if isinstance(value, bytes | bytearray) else str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _escaped(arg: Any) -> Any:
    return escape(arg) if isinstance(arg, str | bytes | bytearray | BaseException) else arg


class EscapeFilter(logging.Filter):
    """Escapes a record's arguments (the values interpolated into its message), which may
    have come from Redis; the message template itself is the library's own text."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_escaped(a) for a in record.args)
        elif isinstance(record.args, Mapping):
            record.args = {k: _escaped(v) for k, v in record.args.items()}
        return True


_FILTER = EscapeFilter()


def get_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` whose records have their arguments escaped."""
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger


def redis_error_text(exc: BaseException) -> str:
    """A Redis error as Redis said it: the code word back in front (``MOVED 1234 host:port``),
    and for the cluster ones a hint that the server is a Redis Cluster node."""
    text = str(exc)
    if isinstance(exc, MasterNotFoundError):  # redis-py appends the repr of its sentinel clients
        return text.split(" : <", 1)[0] + " (no sentinel listed answered, or none knows that master)"
    code = next((c for kind, c in _CODES if isinstance(exc, kind)), None)
    if code is None or text.startswith(code):
        return text
    text = f"{code} {text}".strip()
    if code in _CLUSTER:
        text += " (a Redis Cluster node answered: give a redis+cluster:// URL)"
    return text
