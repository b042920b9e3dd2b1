"""One mapping from failures to HTTP answers: every error of the API is an ``ErrorReply``.

Owns the status code of each ``OrchestratorError`` (404 not found, 409 a state that does
not allow the change, 422 bad input, 503 Redis unreachable or refusing), the same shape for
FastAPI's own request validation and for Starlette's HTTP errors (unknown path, wrong
method), and the ``responses`` every route documents in the OpenAPI document. Messages are
scrubbed of the Redis URL's password. Does not decide who may call what (``auth``).
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ..errors import (
    ConfigurationError,
    CorruptQueue,
    InvalidTransition,
    LeaseLost,
    MalformedRecord,
    OrchestratorError,
    OutOfMemory,
    QueueNotFound,
    RedisCommandError,
    RedisUnavailable,
    ScheduleNotFound,
    ShardingRefused,
    TaskNotFound,
    UnknownTask,
    ValidationError,
)
from ..sanitize import redact
from .schemas import ErrorDetail, ErrorReply

# The first class an error is an instance of gives its status.
STATUS: tuple[tuple[type[OrchestratorError], int], ...] = (
    (TaskNotFound, 404),
    (QueueNotFound, 404),
    (ScheduleNotFound, 404),
    (InvalidTransition, 409),
    (LeaseLost, 409),
    (MalformedRecord, 409),  # the record was written by hand: doctor names it
    (CorruptQueue, 409),
    (ShardingRefused, 409),
    (ValidationError, 422),
    (ConfigurationError, 422),
    (UnknownTask, 422),
    (RedisUnavailable, 503),
    (OutOfMemory, 503),
    (RedisCommandError, 503),
)
HTTP_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 401: "UNAUTHORIZED", 403: "FORBIDDEN"}


def status_of(exc: OrchestratorError) -> int:
    return next((status for kind, status in STATUS if isinstance(exc, kind)), 500)


def error_reply(status: int, detail: ErrorDetail, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(ErrorReply(error=detail).model_dump(mode="json", exclude_none=True), status_code=status,
                        headers=headers)


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route: each status an error of its may have, as ErrorReply."""
    return {status: {"model": ErrorReply} for status in statuses}


# Every route of /api/v1 may meet missing or refused credentials (401, 403: ``auth``), bad
# input (422) and an unreachable Redis (503).
COMMON = (401, 403, 422, 503)


def install_problems(api: FastAPI, redis_url: str) -> None:
    """Register the handlers that give every failure the ErrorReply shape."""

    async def orchestrator_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, OrchestratorError)
        return error_reply(status_of(exc), error_detail(exc, redis_url))

    async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_reply(422, validation_detail(exc.errors()))

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 400:  # a body FastAPI could not read (not UTF-8): bad input, as everywhere
            return error_reply(422, ErrorDetail(code="INVALID", message="the body is not JSON (UTF-8)",
                                                type="RequestValidationError", field="body"))
        code = HTTP_CODES.get(exc.status_code, f"HTTP_{exc.status_code}")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ").lower()
        return error_reply(exc.status_code, ErrorDetail(code=code, message=message, type="HTTPException"),
                           headers=dict(exc.headers or {}))

    api.add_exception_handler(OrchestratorError, orchestrator_error)
    api.add_exception_handler(RequestValidationError, invalid_request)
    api.add_exception_handler(HTTPException, http_error)


def error_detail(exc: OrchestratorError, redis_url: str) -> ErrorDetail:
    """An OrchestratorError as data: its fields, and its one line without the Redis password."""
    fields = exc.fields()
    return ErrorDetail(
        code=fields.pop("code"),
        message=redact(" ".join(str(exc.message or exc).split()), redis_url),
        type=type(exc).__name__,
        **fields,
    )


def error_body(exc: OrchestratorError, redis_url: str) -> dict[str, object]:
    return ErrorReply(error=error_detail(exc, redis_url)).model_dump(mode="json", exclude_none=True)


def validation_detail(errors: Sequence[Any]) -> ErrorDetail:
    """FastAPI's list of validation errors as one line, naming the first field refused."""
    parts, first = [], None
    for error in errors:
        loc = [str(p) for p in error.get("loc", ())]
        where = ".".join(loc[1:] if len(loc) > 1 and loc[0] in ("body", "query", "path", "header") else loc)
        first = first or where or None
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg", "invalid")))
    message = "; ".join(parts) or "invalid request"
    return ErrorDetail(code="INVALID", message=" ".join(message.split())[:500], type="RequestValidationError",
                       field=first)
