"""The dashboard's session: a signed cookie, its CSRF token, and the login routes.

Owns the cookie's format (``role.expires.nonce.signature``, HMAC-SHA256 with a key derived
from the token the login presented, so changing a token ends its sessions), the CSRF token
derived from the same session, and the routes ``POST /api/v1/session`` (log in with a token),
``GET /api/v1/session`` (who am I, and the CSRF token again after a page reload) and
``DELETE /api/v1/session`` (log out). Holds no state: a server restart keeps sessions valid,
a token change ends them. Does not decide who may do what: ``auth.py`` does, and calls
``verify_cookie`` for it. Never logs or returns a token.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from .auth_config import AuthConfig

SESSION_PATH = "/api/v1/session"
CSRF_HEADER = "X-CSRF-Token"
Role = Literal["full", "read"]
_KEY_LABEL = b"orch-session-v1"


@dataclass(frozen=True)
class Principal:
    """Who a request comes from, as the auth middleware found it (``principal_of``)."""

    role: Role
    via: Literal["bearer", "cookie", "open"]
    csrf_token: str | None = None  # cookie sessions only
    expires: int | None = None  # cookie sessions only, Unix seconds


SCOPE_KEY = "orch.auth"


def principal_of(scope: Mapping[str, Any]) -> Principal | None:
    """The principal the auth middleware put in a request's ASGI scope (None: public path,
    or no middleware)."""
    found = scope.get(SCOPE_KEY)
    return found if isinstance(found, Principal) else None


@dataclass(frozen=True)
class Session:
    """A valid session cookie, read: its role and the CSRF token that goes with it."""

    role: Role
    expires: int  # Unix seconds
    csrf_token: str


def _key(token: str) -> bytes:
    return hmac.new(token.encode("ascii"), _KEY_LABEL, hashlib.sha256).digest()


def _mac(key: bytes, text: str) -> str:
    digest = hmac.new(key, text.encode("ascii"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _token_of(config: AuthConfig, role: Role) -> str | None:
    return config.token if role == "full" else config.read_token


def issue_cookie(config: AuthConfig, role: Role, now: float | None = None) -> tuple[str, Session]:
    """A new cookie value for ``role`` (whose token must be configured) and its session."""
    token = _token_of(config, role)
    assert token is not None, "a session is issued only for a configured token"
    expires = int(now if now is not None else time.time()) + int(config.session_ttl)
    nonce = secrets.token_urlsafe(16)
    body = f"{role}.{expires}.{nonce}"
    key = _key(token)
    return f"{body}.{_mac(key, body)}", Session(role, expires, _mac(key, "csrf." + nonce))


def verify_cookie(config: AuthConfig, value: str, now: float | None = None) -> Session | None:
    """The session a cookie value stands for, or None (forged, malformed, expired, or its
    token is no longer the configured one). The signature is compared in constant time."""
    parts = value.split(".")
    if not value.isascii() or len(parts) != 4 or parts[0] not in ("full", "read") or not parts[1].isdigit():
        return None
    role: Role = "full" if parts[0] == "full" else "read"
    token = _token_of(config, role)
    if token is None:
        return None
    key = _key(token)
    body = ".".join(parts[:3])
    if not hmac.compare_digest(parts[3].encode("ascii"), _mac(key, body).encode("ascii")):
        return None
    expires = int(parts[1])
    if expires <= (now if now is not None else time.time()):
        return None
    return Session(role, expires, _mac(key, "csrf." + parts[2]))


def match_token(config: AuthConfig, presented: str) -> Role | None:
    """The role a presented token grants, or None. Both tokens are always compared
    (``hmac.compare_digest``), so the time taken says nothing about which one was close."""
    given = presented.encode("utf-8", "surrogatepass")
    full = hmac.compare_digest(given, (config.token or "").encode("ascii")) and config.token is not None
    read = hmac.compare_digest(given, (config.read_token or "").encode("ascii")) and config.read_token is not None
    return "full" if full else "read" if read else None


class LoginBody(BaseModel):
    """``POST /api/v1/session``: the token to log in with (ORCH_API_TOKEN or ORCH_API_READ_TOKEN)."""

    token: str


class SessionInfo(BaseModel):
    """Who the caller is: ``role`` full (everything) or read (GET and HEAD only); ``via``
    bearer, cookie or open (no token configured); ``csrf_token`` (cookie sessions only)
    to send as ``X-CSRF-Token`` on every request that changes something."""

    role: Role
    via: Literal["bearer", "cookie", "open"]
    csrf_token: str | None = None
    expires_at: int | None = Field(default=None, description="Unix seconds (cookie sessions only)")


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    """Every refusal: ``{"error": {"code": ..., "message": ...}}``."""

    error: ErrorDetail


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


_REFUSALS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "no credentials, or not valid ones"},
    403: {"model": ErrorBody, "description": "Host or Origin refused, read token, or missing CSRF token"},
}
_LOGIN_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": LoginBody.model_json_schema()}},
    }
}


def _login_refusal() -> JSONResponse:
    return error_response(
        401,
        "BAD_CREDENTIALS",
        'log in with a JSON body {"token": ...} holding ORCH_API_TOKEN or ORCH_API_READ_TOKEN',
        {"WWW-Authenticate": 'Bearer realm="orch"'},
    )


def session_router(config: AuthConfig) -> APIRouter:
    """The three session routes, bound to ``config``."""
    router = APIRouter(tags=["session"])
    no_store = {"Cache-Control": "no-store"}

    @router.post(SESSION_PATH, response_model=SessionInfo, responses=_REFUSALS, openapi_extra=_LOGIN_SCHEMA)
    async def log_in(request: Request) -> Response:
        """Log in with a token: sets an HttpOnly, SameSite=Strict session cookie and answers
        the CSRF token that every mutating request with the cookie must carry."""
        if config.open:
            return JSONResponse(SessionInfo(role="full", via="open").model_dump(), headers=no_store)
        # Read by hand, not by a pydantic parameter: FastAPI's 422 would echo the body (a token).
        try:
            body = LoginBody.model_validate(json.loads(await request.body()))
        except (ValueError, TypeError):
            return _login_refusal()
        role = match_token(config, body.token)
        if role is None:
            return _login_refusal()
        value, session = issue_cookie(config, role)
        info = SessionInfo(role=role, via="cookie", csrf_token=session.csrf_token, expires_at=session.expires)
        response = JSONResponse(info.model_dump(), headers=no_store)
        response.set_cookie(
            config.cookie_name,
            value,
            max_age=int(config.session_ttl),
            path=_cookie_path(request),
            secure=_secure(config, request),
            httponly=True,
            samesite="strict",
        )
        return response

    @router.get(SESSION_PATH, response_model=SessionInfo, responses=_REFUSALS)
    async def who_am_i(request: Request) -> Response:
        """The caller's role, and a cookie session's CSRF token (after a page reload)."""
        principal = principal_of(request.scope)
        if principal is None:  # the middleware was not installed: say nothing
            return error_response(401, "NO_CREDENTIALS", "no credentials")
        info = SessionInfo(
            role=principal.role, via=principal.via, csrf_token=principal.csrf_token, expires_at=principal.expires
        )
        return JSONResponse(info.model_dump(), headers=no_store)

    @router.delete(SESSION_PATH, status_code=204, responses=_REFUSALS)
    async def log_out(request: Request) -> Response:
        """Forget the session cookie (needs no credentials: a stale cookie can always go)."""
        response = Response(status_code=204, headers=no_store)
        response.delete_cookie(
            config.cookie_name, path=_cookie_path(request), secure=_secure(config, request), httponly=True,
            samesite="strict",
        )
        return response

    return router


def _cookie_path(request: Request) -> str:
    return str(request.scope.get("root_path") or "") or "/"


def _secure(config: AuthConfig, request: Request) -> bool:
    return config.cookie_secure if config.cookie_secure is not None else request.url.scheme == "https"
