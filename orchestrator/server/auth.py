"""Who may do what over HTTP: bearer tokens, the session cookie, CSRF, Host and Origin.

Owns the decision for one request (``authorize``: a pure function of the config and the
request's headers) and the pure ASGI middleware that applies it (``AuthMiddleware``; not
Starlette's BaseHTTPMiddleware, so a server-sent event stream passes through unbuffered),
installed with ``install_auth``. The config it decides by, ``AuthConfig``, and
``check_bind`` (a non-loopback address needs a token) are ``auth_config.py``'s, re-exported here.
The rules (README, "Who may do what"):

- ``ORCH_API_TOKEN`` allows everything, ``ORCH_API_READ_TOKEN`` GET and HEAD only, as
  ``Authorization: Bearer <token>`` or as the session cookie the login route sets
  (``session.py``); a request that changes something with the cookie must carry the
  session's ``X-CSRF-Token``. ``/healthz``, ``/readyz`` and ``/metrics`` need nothing
  (``metrics_need_token`` makes ``/metrics`` need the read token).
- No token configured (``open``): everything is allowed, but only to a request whose Host
  is a loopback name with the server's port; ``orch serve`` then binds loopback only. A
  change sent by a browser still needs the process's CSRF token (``open_csrf``, in the pages).
- On every request: an Origin must be absent or the server's own (or listed), so no web
  page can make a browser change anything or read an answer.

Refusals are 401 (no or bad credentials) or 403 (read token on a mutating request, Host,
Origin, CSRF), each one JSON line ``{"error": {"code", "message"}}``; with the dashboard
(``login_path``), a browser's GET of a page (Accept: text/html, outside ``/api/``) without
credentials is sent to the login form (303) instead. Tokens are compared
with ``hmac.compare_digest`` and never logged nor repeated in an answer. Does not read the
environment (``AuthConfig.from_env`` in ``auth_config.py`` does, for the CLI), and does not
define the API's routes (``app.py``) beyond the session's.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.requests import cookie_parser

from ..errors import ConfigurationError
from ..sanitize import escape, get_logger
from .auth_config import DEFAULT_PORTS, READ_TOKEN_ENV, TOKEN_ENV, AuthConfig, check_bind, is_loopback, origin_key
from .session import (
    SCOPE_KEY,
    SESSION_PATH,
    Principal,
    match_token,
    principal_of,
    session_router,
    verify_cookie,
)

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "AuthConfig",
    "AuthMiddleware",
    "Principal",
    "Refusal",
    "RequestFacts",
    "authorize",
    "check_bind",
    "install_auth",
    "principal_of",
]

logger = get_logger(__name__)

READ_METHODS = frozenset({"GET", "HEAD"})
OPEN_PATHS = ("/healthz", "/readyz")  # GET and HEAD without credentials
METRICS_PATH = "/metrics"
_WWW_AUTHENTICATE = 'Bearer realm="orch"'


@dataclass(frozen=True)
class Refusal:
    """A request refused: 401 or 403, one of the codes below, a message without secrets."""

    status: int
    code: str
    message: str


@dataclass(frozen=True)
class RequestFacts:
    """What the decision reads of a request: its method, route path (without the mount's
    root path), scheme, the server's port and a few headers."""

    method: str
    path: str
    scheme: str = "http"
    server_port: int | None = None
    host: str | None = None
    origin: str | None = None
    fetch_site: str | None = None
    authorization: str | None = None
    cookie: str | None = None
    csrf: str | None = None
    accept: str | None = None

    @classmethod
    def from_scope(cls, scope: Mapping[str, Any]) -> RequestFacts:
        headers: dict[str, str] = {}
        for name, value in scope.get("headers", ()):
            headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
        server = scope.get("server")
        scheme = {"ws": "http", "wss": "https"}.get(scope.get("scheme", "http"), scope.get("scheme", "http"))
        return cls(
            method=scope.get("method", "GET").upper(),
            path=_route_path(scope),
            scheme=scheme,
            server_port=server[1] if server and len(server) > 1 and isinstance(server[1], int) else None,
            host=headers.get("host"),
            origin=headers.get("origin"),
            fetch_site=headers.get("sec-fetch-site"),
            authorization=headers.get("authorization"),
            cookie=headers.get("cookie"),
            csrf=headers.get("x-csrf-token"),
            accept=headers.get("accept"),
        )


def _route_path(scope: Mapping[str, Any]) -> str:
    path, root = str(scope.get("path", "/")), str(scope.get("root_path", ""))
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :] or "/"
    return path


def _split_host(value: str) -> tuple[str, int | None] | None:
    """A Host header as (name, port or None), or None when it is not one."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        name, rest = (value[1:end], value[end + 1 :]) if end > 0 else ("", "")
    else:
        name, colon, port = value.partition(":")
        rest = colon + port
    if not name or (rest and (not rest.startswith(":") or not rest[1:].isascii() or not rest[1:].isdigit())):
        return None
    return name, int(rest[1:]) if rest else None


def _host_refusal(config: AuthConfig, facts: RequestFacts) -> Refusal | None:
    if "*" in config.allowed_hosts or (config.token is not None and not config.allowed_hosts):
        return None
    split = _split_host(facts.host) if facts.host else None
    if split is not None:
        name, port = split
        if name in config.allowed_hosts:
            return None
        expected = facts.server_port
        if is_loopback(name) and (expected is None or (port or DEFAULT_PORTS.get(facts.scheme)) == expected):
            return None
    shown = "no Host header" if facts.host is None else f"Host {escape(facts.host[:100])!r}"
    rule = "a loopback name (localhost, 127.0.0.1, [::1])"
    if facts.server_port:
        rule += f" with port {facts.server_port}"
    if config.allowed_hosts:
        rule += " or one of the allowed hosts"
    return Refusal(403, "BAD_HOST", f"{shown} refused: this server answers {rule} only")


def _origin_refusal(config: AuthConfig, facts: RequestFacts) -> Refusal | None:
    if facts.origin is None:
        if facts.fetch_site == "cross-site":
            return Refusal(403, "BAD_ORIGIN", "a cross-site request is refused")
        return None
    if "*" in config.allowed_origins:
        return None
    origin = origin_key(facts.origin)
    split = _split_host(facts.host) if facts.host else None
    own = (facts.scheme, split[0], split[1] or DEFAULT_PORTS.get(facts.scheme, 80)) if split else None
    allowed = {origin_key(o) for o in config.allowed_origins}
    if origin is not None and (origin == own or origin in allowed):
        return None
    return Refusal(
        403, "BAD_ORIGIN", f"Origin {escape(facts.origin[:100])!r} refused: only this server's own pages may call it"
    )


def _is_public(config: AuthConfig, facts: RequestFacts) -> bool:
    if facts.path == SESSION_PATH:
        return facts.method in ("POST", "DELETE")  # log in, log out; GET says who you are
    if facts.method not in READ_METHODS:
        return False
    if facts.path in OPEN_PATHS or (facts.path == METRICS_PATH and not config.metrics_need_token):
        return True
    return any(facts.path == p or (p.endswith("/") and facts.path.startswith(p)) for p in config.public_paths)


def _credentials(config: AuthConfig, facts: RequestFacts, now: float | None) -> Principal | Refusal:
    if facts.authorization is not None:
        scheme, _, value = facts.authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return Refusal(401, "BAD_CREDENTIALS", "the Authorization header must be 'Bearer <token>'")
        role = match_token(config, value.strip())
        if role is None:
            return Refusal(401, "BAD_CREDENTIALS", "the bearer token is not valid")
        return Principal(role, "bearer")
    cookie = cookie_parser(facts.cookie).get(config.cookie_name) if facts.cookie else None
    if cookie:
        session = verify_cookie(config, cookie, now)
        if session is None:
            again = f"log in again (POST {SESSION_PATH})"
            return Refusal(401, "BAD_CREDENTIALS", f"the session cookie is not valid or has expired: {again}")
        return Principal(session.role, "cookie", session.csrf_token, session.expires)
    return Refusal(
        401,
        "NO_CREDENTIALS",
        f"this API needs a token: send 'Authorization: Bearer <{TOKEN_ENV} or {READ_TOKEN_ENV}>' "
        f"or log in (POST {SESSION_PATH})",
    )


def _open_refusal(config: AuthConfig, facts: RequestFacts) -> Refusal | None:
    """Open mode: a change sent by a browser (an Origin or Sec-Fetch-Site header says so) must
    carry this process's CSRF token, which only its own pages hold; so must one from an Origin
    that ``allowed_origins`` does not name. curl and other clients send neither header."""
    if facts.method in READ_METHODS or (facts.origin is None and facts.fetch_site is None):
        return None
    allowed = {origin_key(o) for o in config.allowed_origins}
    if facts.origin is not None and ("*" in config.allowed_origins or origin_key(facts.origin) in allowed):
        return None
    if not facts.csrf:
        return Refusal(403, "CSRF_MISSING", f"{facts.method} from a browser needs the X-CSRF-Token header of this "
                       "server's pages")
    if not hmac.compare_digest(facts.csrf.encode("latin-1"), config.open_csrf.encode("ascii")):
        return Refusal(403, "CSRF_MISMATCH", "the X-CSRF-Token header does not belong to this server")
    return None


def authorize(config: AuthConfig, facts: RequestFacts, now: float | None = None) -> Principal | Refusal | None:
    """The decision for one request: a ``Refusal``, the ``Principal`` it comes from, or None
    for a public path (health, metrics, log in and out) that needs no credentials."""
    refusal = _host_refusal(config, facts) or _origin_refusal(config, facts)
    if refusal is not None:
        return refusal
    if _is_public(config, facts):
        return None
    if config.open:
        return _open_refusal(config, facts) or Principal("full", "open", config.open_csrf)
    found = _credentials(config, facts, now)
    if isinstance(found, Refusal) or facts.method in READ_METHODS:
        return found
    if found.role == "read":
        return Refusal(403, "READ_ONLY", f"the read token allows GET and HEAD only; {facts.method} needs {TOKEN_ENV}")
    if found.via == "cookie":
        if not facts.csrf:
            needs = "needs the X-CSRF-Token header the login answered"
            return Refusal(403, "CSRF_MISSING", f"{facts.method} with the session cookie {needs}")
        if not hmac.compare_digest(facts.csrf.encode("latin-1"), (found.csrf_token or "").encode("ascii")):
            return Refusal(403, "CSRF_MISMATCH", "the X-CSRF-Token header does not belong to this session")
    return found


class AuthMiddleware:
    """Applies ``authorize`` to every HTTP and WebSocket request, passing everything else
    (lifespan) and every allowed request through untouched, body and stream alike. The
    principal goes in the scope for the routes (``principal_of``). With ``login_path`` (the
    dashboard's), a browser's page request without valid credentials is sent there (303)
    instead of the 401 line; the API's paths keep their 401."""

    def __init__(self, app: ASGIApp, config: AuthConfig, login_path: str | None = None) -> None:
        self.app = app
        self.config = config
        self.login_path = login_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        facts = RequestFacts.from_scope(scope)
        decision = authorize(self.config, facts)
        if isinstance(decision, Refusal):
            logger.info("refused %s %s: %s %s", facts.method, facts.path, decision.status, decision.code)
            if self.login_path and decision.status == 401 and _wants_page(facts):
                await _to_login(scope, send, self.login_path, facts.path)
                return
            await _refuse(scope, send, decision)
            return
        if decision is not None:
            scope = {**scope, SCOPE_KEY: decision}
        await self.app(scope, receive, send)


def _wants_page(facts: RequestFacts) -> bool:
    """A browser asking for a page (GET of HTML), not a client of the API or of /metrics."""
    return (
        facts.method in READ_METHODS
        and not facts.path.startswith("/api/")
        and facts.path != METRICS_PATH
        and "text/html" in (facts.accept or "")
    )


async def _to_login(scope: Scope, send: Send, login_path: str, path: str) -> None:
    root = str(scope.get("root_path") or "")
    query = bytes(scope.get("query_string") or b"").decode("latin-1")
    back = f"{path}?{query}" if query else path  # the page asked for, filters and tab included
    location = f"{root}{login_path}?next={quote(back, safe='/')}"
    headers = [(b"location", location.encode("latin-1")), (b"content-length", b"0"), (b"cache-control", b"no-store")]
    await send({"type": "http.response.start", "status": 303, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


async def _refuse(scope: Scope, send: Send, refusal: Refusal) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": refusal.code})
        return
    body = json.dumps({"error": {"code": refusal.code, "message": refusal.message}}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    if refusal.status == 401:
        headers.append((b"www-authenticate", _WWW_AUTHENTICATE.encode()))
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def install_auth(app: FastAPI, config: AuthConfig, *, login_path: str | None = None) -> None:
    """Put ``config``'s rules in front of every route of ``app`` and add the session routes.
    Call it once, before the app starts; an open config logs a warning saying so.
    ``login_path``: where a browser's page request without credentials is sent (the dashboard)."""
    if not isinstance(config, AuthConfig):
        raise ConfigurationError("install_auth needs an AuthConfig (a token, or open=True)", field="config")
    app.include_router(session_router(config))
    app.add_middleware(AuthMiddleware, config=config, login_path=login_path)
    if config.open:
        logger.warning(
            "no API token (%s): the HTTP API is open to every local process; it answers only "
            "requests whose Host is a loopback name and whose Origin is absent or its own",
            TOKEN_ENV,
        )
