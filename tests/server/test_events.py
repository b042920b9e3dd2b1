"""``GET /api/v1/events`` as server-sent events on a real ``orch serve``: the latest events
first, new ones as they come, a 404 before streaming for a queue never used, and no Redis
read left behind once the client goes away."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator

import httpx
import pytest
import redis

from orchestrator import Orchestrator
from orchestrator.redis_local import LocalRedis
from orchestrator.server.routes.events import BLOCK_MS
from tests.integration.procs import wait_for

from .conftest import BEARER, TOKENS, Serve, Server


def data_of(lines: Iterator[str]) -> Iterator[dict[str, object]]:
    """The events of a server-sent event stream, as they come (comments and ids skipped)."""
    for line in lines:
        if line.startswith("data: "):
            yield json.loads(line.removeprefix("data: "))


CLIENT_NAME = "orch-serve-events-test"


@pytest.fixture(scope="module")
def named(serve: Serve, redis_server: LocalRedis) -> Server:
    """A server whose Redis connections carry CLIENT_NAME: its reads are told from those of
    anything else on the session's redis-server (a follower left by another test)."""
    return serve(env=TOKENS, headers=BEARER, redis_url=f"{redis_server.url}?client_name={CLIENT_NAME}")


def blocked_reads(r: redis.Redis) -> list[str]:
    """The server's Redis connections blocked in XREAD now."""
    return [c["id"] for c in r.client_list()
            if c.get("name") == CLIENT_NAME and c.get("cmd") == "xread" and "b" in c.get("flags", "")]


def test_events_stream_the_latest_then_new_ones_and_stop_with_the_client(
    named: Server, app: Orchestrator, r: redis.Redis, queue: str
) -> None:
    first = app.enqueue("m:f", queue=queue).id
    with (
        httpx.Client(base_url=named.base_url, headers=named.headers, timeout=httpx.Timeout(5.0)) as c,
        c.stream("GET", "/api/v1/events", params={"queue": queue, "count": 5}) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = data_of(response.iter_lines())
        seen = next(events)
        assert (seen["event"], seen["task_id"], seen["queue"]) == ("enqueued", first, queue)
        wait_for(lambda: blocked_reads(r), "the stream to wait on Redis", 5)
        second = app.enqueue("m:f", queue=queue).id
        seen = next(events)  # a read timeout (5 s) fails the test rather than hanging it
        assert (seen["event"], seen["task_id"]) == ("enqueued", second)
    # A read already started when the client left may run its course (BLOCK_MS); then none again.
    quiet = 1.5 * BLOCK_MS / 1000
    last_read, deadline = time.monotonic(), time.monotonic() + 5
    while time.monotonic() - last_read < quiet:
        assert time.monotonic() < deadline, "the stream went on reading Redis after its client left"
        if blocked_reads(r):
            last_read = time.monotonic()
        time.sleep(0.01)
    with named.client() as c2:
        assert c2.get("/healthz").status_code == 200


def test_a_reconnecting_client_gets_the_events_it_missed(api: Server, app: Orchestrator, queue: str) -> None:
    ids = [app.enqueue("m:f", queue=queue).id for _ in range(3)]
    with api.client() as c:
        with c.stream("GET", "/api/v1/events", params={"queue": queue, "count": 3}) as response:
            seen = list(itertools.islice(data_of(response.iter_lines()), 3))
        assert [e["task_id"] for e in seen] == ids
        missed = app.enqueue("m:f", queue=queue).id  # while no client listens
        headers = {"Last-Event-ID": str(seen[0]["id"])}
        with c.stream("GET", "/api/v1/events", params={"queue": queue, "count": 1}, headers=headers) as response:
            again = list(itertools.islice(data_of(response.iter_lines()), 3))
        assert [e["task_id"] for e in again] == [*ids[1:], missed]  # all since the one named, not the latest (count)


def test_events_of_a_queue_never_used_are_404_before_streaming(api: Server) -> None:
    with api.client() as c:
        response = c.get("/api/v1/events", params={"queue": "never-used"})
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "QUEUE_NOT_FOUND"
        assert c.get("/api/v1/events", params={"count": 5000}).status_code == 422
