"""The ASGI application of ``orch serve``: ``create_app(app)`` builds it on an ``Orchestrator``.

Owns putting the parts together: the routes of ``routes/`` under ``/api/v1`` (without the
mutating ones when ``read_only``), the web dashboard (``dashboard/``), ``/healthz`` (the
process answers) and ``/readyz`` (Redis answers), ``/metrics`` (``metrics.exposition``), the
OpenAPI document at ``/api/v1/openapi.json``, the error mapping of ``problems`` and the
access rules of ``auth``. Mountable in a user's own ASGI app. Does not start a server
(``run``) nor read the environment (the CLI does).
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

from dataclasses import replace

from fastapi import APIRouter, FastAPI, Response

from ..client import Orchestrator
from ..redis_calls import redis_calls
from ..version import __version__
from .auth import AuthConfig, install_auth
from .dashboard import DASHBOARD_PUBLIC, LOGIN_PATH, install_dashboard
from .deps import App, Registry
from .metrics import exposition
from .problems import documented, install_problems
from .routes import events, queues, schedules, tasks, workers
from .schemas import Health

API_PREFIX = "/api/v1"
OPENAPI_URL = f"{API_PREFIX}/openapi.json"


def create_app(
    app: Orchestrator,
    *,
    read_only: bool = False,
    registry: Registry | None = None,
    auth: AuthConfig,
    dashboard: bool = True,
) -> FastAPI:
    """The HTTP API over ``app``'s operator API.

    ``auth``: who may call it (``AuthConfig(token=...)``, or ``AuthConfig(open=True)`` for no
    token, loopback Hosts only): there is no default, a mounted API must choose.
    ``read_only``: no mutating route exists (nor is in the OpenAPI document). ``registry``
    (the tasks of ``--app`` modules): an enqueue takes only these names, each on its
    declared queue, with its options and signature check; they join ``app.registry``.
    ``dashboard``: serve the web dashboard's pages (``/``, ``/queues/...``, ``/tasks/...``,
    ``/workers``, ``/login``) and its static files; a browser without a session is sent to
    ``/login`` when tokens are configured.
    """
    api = FastAPI(
        title="orchestrator",
        version=__version__,
        description="The operator API of orchestrator, a Redis-backed priority job queue, over HTTP.",
        openapi_url=OPENAPI_URL,
        docs_url=None,
        redoc_url=None,
    )
    if registry is not None:
        app.registry.update(registry)
    api.state.orchestrator = app
    api.state.registry = registry
    api.state.read_only = read_only
    install_problems(api, app.settings.redis_url)
    api.include_router(_health())
    for part in (queues, tasks, workers, events, schedules):
        api.include_router(part.router(read_only), prefix=API_PREFIX)
    api.include_router(_metrics())
    if dashboard:
        install_dashboard(api)
        auth = replace(auth, public_paths=(*auth.public_paths, *DASHBOARD_PUBLIC))
    install_auth(api, auth, login_path=LOGIN_PATH if dashboard else None)
    return api


def _health() -> APIRouter:
    api = APIRouter(tags=["health"])

    @api.get("/healthz", summary="The process answers")
    def healthz() -> Health:
        return Health(status="ok")

    @api.get("/readyz", summary="Redis answers", responses=documented(503))
    def readyz(app: App) -> Health:
        with redis_calls():
            app.redis.ping()
        return Health(status="ok")

    return api


def _metrics() -> APIRouter:
    api = APIRouter(tags=["metrics"])

    @api.get(
        "/metrics",
        summary="Prometheus metrics, read from Redis (every worker's)",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"},
                   **documented(401, 403, 503)},
    )
    def metrics(app: App) -> Response:
        with redis_calls():
            body, content_type = exposition(app)
        return Response(body, media_type=content_type)

    return api
