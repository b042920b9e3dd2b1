"""In-process fake Redis servers behind ``fakeredis://NAME`` URLs (the ``testing`` extra).

Owns the URL scheme's syntax and one fakeredis ``FakeServer`` per NAME in this process, with
the sync and asyncio clients built on it: every client of one NAME (an Orchestrator's
``redis`` and ``aredis``, a second Orchestrator, a test's own client) sees one database,
so a producer, in-process worker code and the operator API meet as they would on a real
Redis. The scripts run in fakeredis's Lua (lupa); where it differs from Redis's is listed
in the README ("On fakeredis") and pinned by tests/lua, which runs on both backends.
Does not decide when to use a fake (the URL says so) nor build real clients
(``connection``). fakeredis is imported only when a fake client is built: the core install
does not have it.
"""

from __future__ import annotations

import importlib.util
import re
import threading
from typing import TYPE_CHECKING

from .errors import ConfigurationError

if TYPE_CHECKING:
    from fakeredis import FakeServer
    from redis import Redis
    from redis.asyncio import Redis as AsyncRedis

SCHEME = "fakeredis://"
INSTALL = "pip install 'orchestrator-queue[testing]'"
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")
# The Redis these fakes answer as: the oldest the project supports and tests on (7.0).
_VERSION = (7, 0)

_servers: dict[str, FakeServer] = {}
_lock = threading.Lock()


def is_fake(url: str) -> bool:
    return url.startswith(SCHEME)


def missing() -> str | None:
    """What to install for fake URLs to work, or None when fakeredis and lupa are there."""
    if importlib.util.find_spec("fakeredis") is None or importlib.util.find_spec("lupa") is None:
        return f"fakeredis:// needs fakeredis with lupa (its Lua): {INSTALL}"
    return None


def url_problem(url: str) -> str | None:
    """What is wrong with ``url`` as a fakeredis:// URL, or None."""
    name = url.removeprefix(SCHEME)
    if not _NAME.fullmatch(name):
        return "a fakeredis URL is fakeredis://NAME, NAME letters, digits, '.', '_' or '-' (nothing after it)"
    return missing()


def server(url: str) -> FakeServer:
    """The one fake server of ``url``'s NAME in this process (made on first use)."""
    problem = url_problem(url)
    if problem is not None:
        raise ConfigurationError(f"invalid redis_url: {problem}", field="redis_url")
    import fakeredis

    name = url.removeprefix(SCHEME)
    with _lock:
        if name not in _servers:
            _servers[name] = fakeredis.FakeServer(version=_VERSION)
        return _servers[name]


def sync_client(url: str) -> Redis:
    """A client of the fake server of ``url``."""
    import fakeredis

    return fakeredis.FakeRedis(server=server(url), version=_VERSION)


def async_client(url: str) -> AsyncRedis:
    """An asyncio client of the fake server of ``url``."""
    import fakeredis

    return fakeredis.FakeAsyncRedis(server=server(url), version=_VERSION)
