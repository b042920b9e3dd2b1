"""The pytest plugin (entry point ``orchestrator``): fixtures ``orch_app``, ``orch_clock``, ``orch_user_app``.

Owns the fixtures a user's tests request: ``orch_app`` (an Orchestrator on the session's
test Redis, its database emptied before each test; your own app when ``orch_user_app``
returns it), ``orch_clock`` (the scripts' clock: ``advance(seconds)``), ``orch_backend``
(the session's Redis, started on first use: ``backend``) and the ``--orch-backend``
option. Loaded in every pytest run of an environment where the package is installed, so
it starts nothing and imports no more than the package until a test asks for a fixture
(``-p no:orchestrator`` turns it off). Does not run tasks (``app.run_until_idle()``).
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ..client import Orchestrator
    from .backend import Backend
    from .clock import Clock


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("orchestrator", "orchestrator task queue (orch_app, orch_clock)")
    group.addoption(
        "--orch-backend",
        choices=("auto", "redis-server", "fakeredis"),  # backend.CHOICES, not imported before a test needs it
        default="auto",
        help="Redis of the orch_app fixture: a private redis-server when installed (auto), or fakeredis.",
    )


@pytest.fixture(scope="session")
def orch_backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """The session's test Redis: a private redis-server on a free port, else fakeredis."""
    from .backend import start, unavailable

    choice = request.config.getoption("orch_backend")
    problem = unavailable(choice)
    if problem is not None:
        pytest.skip(problem)
    backend = start(choice)
    try:
        yield backend
    finally:
        backend.stop()


@pytest.fixture
def orch_user_app() -> Orchestrator | None:
    """Override it to return the app your tasks are registered on: ``orch_app`` is then that
    app, pointed at the test Redis for the test (and back after it). None: a new app."""
    return None


@pytest.fixture
def orch_app(orch_backend: Backend, orch_user_app: Orchestrator | None) -> Iterator[Orchestrator]:
    """An Orchestrator on the test Redis, emptied before the test; ``run_until_idle()`` runs its tasks."""
    from ..client import Orchestrator
    from ..config import Settings
    from .assertions import set_current_app

    if orch_user_app is None:
        app = Orchestrator(settings=Settings(redis_url=orch_backend.url))
    else:
        app = orch_user_app
        before, offset = app.settings, app.clock_offset_ms
        app.reconnect(Settings(**{**app.settings.model_dump(), "redis_url": orch_backend.url}))
        app.clock_offset_ms = 0
    app.redis.flushdb()  # the session's own Redis: nothing else lives there
    set_current_app(app)
    try:
        yield app
    finally:
        set_current_app(None)
        if orch_user_app is None:
            app.close()
        else:
            app.reconnect(before)
            app.clock_offset_ms = offset


@pytest.fixture
def orch_clock(orch_app: Orchestrator) -> Iterator[Clock]:
    """The clock ``orch_app``'s scripts read: ``advance(seconds)`` brings delays, retry backoff,
    lease expiry and periodic schedules due; the next ``run_until_idle()`` acts on it."""
    from .clock import Clock

    clock = Clock(orch_app)
    try:
        yield clock
    finally:
        clock.reset()
