"""Route of live events: ``GET /api/v1/events?queue=`` as server-sent events.

Owns the event stream of one client: the latest ``count`` events first (or, when it
reconnects with ``Last-Event-ID``, every event since that one), then each new one as it
comes (``Orchestrator.follow``), one ``data:`` line of JSON per event (the ``Event``
record) with its stream id as ``id:``, and a comment line now and then so proxies keep
the connection open. The blocking Redis reads run in worker threads of their
own (``STREAMS`` at most at once), never on the event loop; the stream ends when the
client goes away (checked between reads of at most ``BLOCK_MS``). Does not read Redis itself.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Iterator
from typing import Annotated

import anyio
import orjson
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from ...errors import OrchestratorError
from ...records import Event
from ..deps import App
from ..problems import COMMON, documented, error_body

BLOCK_MS = 1000  # one blocking read: also how soon a gone client is noticed
KEEPALIVE_S = 15.0  # a comment line this often when nothing happens
STREAMS = 100  # event streams reading Redis at once (each holds a thread while it waits)
MEDIA_TYPE = "text/event-stream"
EVENT_ID = re.compile(r"[0-9]{1,15}-[0-9]{1,15}")  # a stream entry id; any other Last-Event-ID is ignored


def frame(event: Event) -> bytes:
    """One server-sent event: its id and the Event record as one line of JSON."""
    return b"id: " + event.id.encode() + b"\ndata: " + orjson.dumps(event.model_dump(mode="json")) + b"\n\n"


def router(read_only: bool) -> APIRouter:
    api = APIRouter(tags=["events"], responses=documented(*COMMON))
    limiter = anyio.CapacityLimiter(STREAMS)

    @api.get(
        "/events",
        summary="Live events of the queues, as server-sent events (every known queue by default)",
        response_class=StreamingResponse,
        responses={200: {"content": {MEDIA_TYPE: {}}, "description": "One `data:` line of JSON (an Event) per "
                         "event, its stream id as `id:`; a comment line now and then; endless."},
                   **documented(404)},
    )
    async def events(
        request: Request,
        app: App,
        queue: Annotated[list[str] | None, Query(description="Only these queues (repeatable).")] = None,
        count: Annotated[int, Query(ge=0, le=1000, description="Latest events to send first.")] = 0,
        last_event_id: Annotated[str | None, Header(
            alias="Last-Event-ID", description="Resume after this event (what EventSource sends when it "
            "reconnects): the events since then come first, instead of the latest `count`.")] = None,
    ) -> StreamingResponse:
        chosen = list(queue) if queue else None
        resume = last_event_id if last_event_id and EVENT_ID.fullmatch(last_event_id) else None
        recent = await run_in_threadpool(app.events, chosen, 0 if resume else count)  # QueueNotFound: 404 now
        after = recent
        if resume is not None:
            names = chosen or await run_in_threadpool(app.queues)
            after = [Event(id=resume, queue=names[0], time=None, event="resume", fields={})] if names else []
        batches = app.follow(chosen, after=after, block_ms=BLOCK_MS)
        return StreamingResponse(
            _stream(request, recent, batches, limiter, app.settings.redis_url),
            media_type=MEDIA_TYPE,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return api


async def _stream(
    request: Request, recent: list[Event], batches: Iterator[list[Event]], limiter: anyio.CapacityLimiter,
    redis_url: str,
) -> AsyncIterator[bytes]:
    """The frames of one client's stream; a failure once streaming (Redis gone) ends it with
    an ``event: error`` frame holding the ErrorReply."""
    try:
        yield b": orchestrator events\n\n" + b"".join(frame(e) for e in recent)
        quiet_since = time.monotonic()
        while not await request.is_disconnected():
            batch = await anyio.to_thread.run_sync(next, batches, limiter=limiter)
            if batch:
                yield b"".join(frame(e) for e in batch)
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= KEEPALIVE_S:
                yield b": keep-alive\n\n"
                quiet_since = time.monotonic()
    except OrchestratorError as exc:
        yield b"event: error\ndata: " + orjson.dumps(error_body(exc, redis_url)) + b"\n\n"
    finally:
        close = getattr(batches, "close", None)  # follow() is a generator: its own cleanup runs now
        if close is not None:
            close()
