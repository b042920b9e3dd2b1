"""Where the test Redis comes from: a private redis-server, else fakeredis.

Owns choosing and starting the test session's Redis: ``redis-server`` on PATH gives a
private server (``redis_local.LocalRedis``: a free port, a temporary directory, no
persistence), else the in-process fakeredis backend (the ``fakeredis://`` URL, extra
``[testing]``), which runs the same Lua. ``--orch-backend`` forces one. When neither can
be had, ``unavailable`` says why (the plugin skips the tests that need it). Does not
flush, run or assert anything (``plugin``).
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from typing import Literal

from ..client import Orchestrator
from ..config import Settings
from ..errors import ConfigurationError
from ..redis_local import LocalRedis

Choice = Literal["auto", "redis-server", "fakeredis"]
CHOICES: tuple[Choice, ...] = ("auto", "redis-server", "fakeredis")
FAKE_URL = "fakeredis://orchestrator-pytest"  # one in-process fake server per name


@dataclass
class Backend:
    """The session's test Redis: ``url`` for the apps, ``stop()`` at the end."""

    kind: str
    url: str
    server: LocalRedis | None = field(default=None, repr=False)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


def unavailable(choice: Choice = "auto") -> str | None:
    """Why no test Redis of ``choice`` can be had here (what to install), or None."""
    if choice == "redis-server" or (choice == "auto" and shutil.which("redis-server")):
        return None if shutil.which("redis-server") else "--orch-backend=redis-server: redis-server is not on PATH"
    problem = _fake_problem()
    if problem is None:
        return None
    return (
        f"orch_app needs redis-server on PATH or the fakeredis backend "
        f"(pip install 'orchestrator-queue[testing]'): {problem}"
    )


def start(choice: Choice = "auto") -> Backend:
    """A private redis-server when one is installed (or asked for), else fakeredis; call
    ``unavailable`` first (a redis-server that fails to start raises ConfigurationError)."""
    problem = unavailable(choice)
    if problem is not None:
        raise ConfigurationError(problem)
    if choice == "redis-server" or (choice == "auto" and shutil.which("redis-server")):
        server = LocalRedis(appendonly=False).start()
        return Backend("redis-server", server.url, server)
    return Backend("fakeredis", FAKE_URL)


def _fake_problem() -> str | None:
    """Why the fakeredis backend cannot be used here, or None."""
    try:
        app = Orchestrator(settings=Settings(redis_url=FAKE_URL))
    except Exception as exc:  # the URL scheme not supported by this version
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    try:
        app.redis.ping()
    except Exception as exc:  # fakeredis or lupa not installed
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    finally:
        app.close()
    return None
