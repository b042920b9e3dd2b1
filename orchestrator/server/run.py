"""Serving the HTTP API: ``run_server`` runs ``create_app`` on uvicorn until SIGTERM or SIGINT.

Owns the uvicorn settings of ``orch serve``: one process, the asyncio loop, no proxy
headers trusted, no ``Server`` header, and a short grace at shutdown (event streams never
end by themselves). Does not parse options or read the environment (``cli.serve``).
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import logging

import uvicorn

from ..client import Orchestrator
from .app import create_app
from .auth import AuthConfig, check_bind
from .deps import Registry

SHUTDOWN_GRACE_S = 3  # open requests and event streams get this long after SIGTERM

log = logging.getLogger(__name__)


def run_server(
    app: Orchestrator,
    *,
    host: str,
    port: int,
    read_only: bool = False,
    registry: Registry | None = None,
    auth: AuthConfig,
    log_level: str = "info",
) -> int:
    """Serve until stopped; the exit code (1 when the server could not start, e.g. port in use).

    ConfigurationError, before anything starts, for a non-loopback ``host`` without a token."""
    check_bind(host, auth)
    api = create_app(app, read_only=read_only, registry=registry, auth=auth)
    config = uvicorn.Config(
        api,
        host=host,
        port=port,
        log_level=log_level.lower(),
        log_config=None,  # the CLI configured logging
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    mode = "read-only" if read_only else "read-write"
    access = "open: no token, loopback Hosts only" if auth.open else "bearer token or session cookie"
    log.info("orch serve: HTTP API on http://%s:%d/api/v1 (%s; %s)", _shown(host), port, mode, access)
    try:
        server.run()
    except SystemExit as exc:  # uvicorn exits when it cannot bind
        return int(exc.code or 1) if isinstance(exc.code, int) else 1
    return 0 if server.started else 1


def _shown(host: str) -> str:
    return f"[{host}]" if ":" in host else host
