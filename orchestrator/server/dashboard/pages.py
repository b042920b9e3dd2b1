"""The dashboard's pages: overview, queue, task, workers and login, rendered with Jinja2.

Owns the page routes (``/``, ``/queues/{queue}``, ``/queues/{queue}/tasks/{id}``,
``/tasks/{id}``, ``/workers``, ``/schedules``, ``/login``), what each reads through the operator API, the
HTML error pages (a missing queue or task is a 404 page, Redis unreachable a 503 one), and
what every page is given: the mount's root path, the CSRF token of a cookie session, and
whether actions are shown at all (never with ``--read-only`` or a read token: no button
is rendered, not merely disabled). Actions are the existing ``/api/v1`` routes, called by
``static/dashboard.js``; this module has no mutating route. Does not decide who may see a
page (``auth``: a page needs the read token, ``/login`` and ``/static/`` nothing).
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timezone
from functools import wraps
from typing import Any, ParamSpec

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from ...client import Orchestrator
from ...errors import OrchestratorError, QueueNotFound, TaskNotFound, ValidationError
from ...models import STATE_NAMES
from ...sanitize import redact
from ..session import CSRF_HEADER, principal_of
from . import views

P = ParamSpec("P")
PAGE_SIZE = 50
SERIES_MINUTES = 60
DAY_HOURS = 24  # the queue page's charts, from the 15-minute roll-ups
FEED_EVENTS = 30  # events the live feed starts with
# Sent with every page: no framing (its buttons act), only this server's own scripts and styles.
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_SAFE_NEXT = re.compile(r"^/(?![/\\])[\x21-\x7e]*$")

templates = Environment(
    loader=PackageLoader("orchestrator.server.dashboard", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.filters["when"] = views.when
templates.filters["pretty"] = views.pretty
templates.filters["when_ms"] = views.when_ms
templates.filters["from_ms"] = views.from_ms
templates.filters["short"] = views.short
templates.globals.update(
    states=STATE_NAMES, labels=views.ACTION_LABELS, confirmed=views.CONFIRMED, task_actions=views.task_actions,
    purge_states=views.PURGE_STATES, duration=views.duration, ago=views.ago, csrf_header=CSRF_HEADER,
    timing=views.timing,
)


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A page: ``template`` with ``context`` and what every page is given."""
    principal = principal_of(request.scope)
    read_only = bool(getattr(request.app.state, "read_only", False))
    html = templates.get_template(template).render(
        base=str(request.scope.get("root_path") or ""),
        can_write=not read_only and principal is not None and principal.role == "full",
        read_only=read_only or (principal is not None and principal.role == "read"),
        csrf=principal.csrf_token if principal is not None else None,
        session=principal is not None and principal.via == "cookie",
        path=request.url.path,
        **context,
    )
    return HTMLResponse(html, status_code=status_code, headers=HEADERS)


def _orchestrator(request: Request) -> Orchestrator:
    found: Orchestrator = request.app.state.orchestrator
    return found


def page(fn: Callable[P, Response]) -> Callable[P, Response]:
    """An OrchestratorError while reading becomes an HTML error page (404, 400 or 503)."""

    @wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> Response:
        request = kwargs["request"]
        assert isinstance(request, Request)
        try:
            return fn(*args, **kwargs)
        except (TaskNotFound, QueueNotFound) as exc:
            return _error(request, 404, "Not found", exc)
        except ValidationError as exc:
            return _error(request, 400, "Bad request", exc)
        except OrchestratorError as exc:
            return _error(request, 503, "Redis did not answer", exc)

    return call


def _error(request: Request, status: int, title: str, exc: OrchestratorError) -> HTMLResponse:
    message = redact(" ".join(str(exc.message or exc).split()), _orchestrator(request).settings.redis_url)
    return render(request, "error.html", status, title=title, message=message, status=status)


def router() -> APIRouter:
    pages = APIRouter(include_in_schema=False)

    @pages.get("/", response_class=HTMLResponse)
    @page
    def overview(request: Request) -> Response:
        app = _orchestrator(request)
        queues = app.overview()  # every queue in a few round trips, whatever their number
        rows = app.activity(SERIES_MINUTES, [q.queue for q in queues])  # and their last hour, in two
        return render(
            request, "overview.html", title="Overview", nav="overview", queues=queues,
            charts=views.overview_charts(rows, views.average_load(queues)), feed_events=FEED_EVENTS, poll="queues",
        )

    @pages.get("/queues/{queue}", response_class=HTMLResponse)
    @page
    def queue_page(
        request: Request,
        queue: str,
        state: str = Query("pending"),
        name: str | None = Query(None),
        cursor: str | None = Query(None),
        id: str | None = Query(None),  # the search box's field
    ) -> Response:
        app = _orchestrator(request)
        q = app.queue(queue, must_exist=True)
        if id and id.strip():
            return RedirectResponse(f"{request.scope.get('root_path') or ''}/queues/{q.name}/tasks/{id.strip()}",
                                    status_code=303)
        state = state.strip().lower()
        if state not in STATE_NAMES:
            raise ValidationError(f"unknown state {state!r}: use one of {', '.join(STATE_NAMES)}", field="state")
        stats = q.stats()
        tasks = q.tasks(state, limit=PAGE_SIZE, cursor=cursor or None, name=name or None)
        day = {title: Markup(svg) for title, svg in views.day_charts(q.rollups(hours=DAY_HOURS)).items()}
        schedules = [s for s in app.schedules() if s.spec.queue == q.name]  # few, declared by operators
        return render(
            request, "queue.html", title=f"Queue {q.name}", nav="queues", queue=stats, state=state,
            page=tasks, name=name or "", cursor=cursor or "", day_charts=day, poll="queues",
            schedules=schedules, now=_now(),
        )

    @pages.get("/queues/{queue}/tasks/{task_id}", response_class=HTMLResponse)
    @page
    def task_in_queue(request: Request, queue: str, task_id: str) -> Response:
        return _task_page(request, _orchestrator(request).queue(queue, must_exist=True).task(task_id))

    @pages.get("/tasks/{task_id}", response_class=HTMLResponse)
    @page
    def task_by_id(request: Request, task_id: str) -> Response:
        app = _orchestrator(request)
        return _task_page(request, app.find_queue(task_id).task(task_id))

    @pages.get("/workers", response_class=HTMLResponse)
    @page
    def workers_page(request: Request) -> Response:
        app = _orchestrator(request)
        workers = app.workers()
        return render(request, "workers.html", title="Workers", nav="workers", workers=workers,
                      now=_now())

    @pages.get("/schedules", response_class=HTMLResponse)
    @page
    def schedules_page(request: Request) -> Response:
        app = _orchestrator(request)
        return render(request, "schedules.html", title="Schedules", nav="schedules", schedules=app.schedules(),
                      now=_now())

    @pages.get("/login", response_class=HTMLResponse)
    def login(request: Request, next: str = Query("/")) -> Response:
        return render(request, "login.html", title="Log in", nav="login",
                      next=next if _SAFE_NEXT.match(next) else "/")

    return pages


def _task_page(request: Request, info: Any) -> Response:
    app = _orchestrator(request)
    events = app.queue(info.queue).task_events(info.id, scan=1000)
    error = info.error or info.last_error
    return render(request, "task.html", title=f"Task {info.id}", nav="queues", task=info, events=events,
                  error=error, state=(info.state.value.lower() if info.state else None), now=_now())


def _now() -> datetime:
    """This process's clock, for "12 s ago" (Redis's may differ by the hosts' skew: fine for a person)."""
    return datetime.now(timezone.utc)
