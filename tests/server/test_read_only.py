"""``orch serve --read-only``: no route that changes anything exists, in the OpenAPI document
or on the wire; every read still answers."""

from __future__ import annotations

import pytest

from orchestrator import Orchestrator

from .conftest import BEARER, TOKENS, Serve, Server

MUTATING = ("post", "put", "patch", "delete")


@pytest.fixture(scope="module")
def read_only(serve: Serve) -> Server:
    return serve("--read-only", env=TOKENS, headers=BEARER)


def operations(server: Server) -> set[tuple[str, str]]:
    with server.client() as c:
        paths = c.get("/api/v1/openapi.json").json()["paths"]
    return {(method, path) for path, item in paths.items() for method in item}


def test_the_openapi_document_has_no_mutating_route(read_only: Server, api: Server) -> None:
    full, reading = operations(api), operations(read_only)
    changing = {(m, p) for m, p in full if m in MUTATING and not p.startswith("/api/v1/session")}
    assert ("post", "/api/v1/queues/{queue}/tasks") in changing and ("post", "/api/v1/queues/{queue}/purge") in changing
    assert not changing & reading
    assert {(m, p) for m, p in full if m == "get"} == {(m, p) for m, p in reading if m == "get"}


def test_mutating_requests_find_no_route_and_change_nothing(read_only: Server, app: Orchestrator, queue: str) -> None:
    task_id = app.enqueue("m:f", queue=queue).id
    app.schedule("ro", "m:f", every=60, queue=queue)
    with read_only.client() as c:
        for method, path in [
            ("POST", f"/api/v1/queues/{queue}/tasks"),
            ("POST", f"/api/v1/queues/{queue}/purge"),
            ("POST", f"/api/v1/queues/{queue}/retry-failed"),
            ("POST", f"/api/v1/queues/{queue}/pause"),
            ("POST", f"/api/v1/queues/{queue}/tasks/{task_id}/cancel"),
            ("POST", f"/api/v1/tasks/{task_id}/cancel"),
            ("DELETE", f"/api/v1/tasks/{task_id}"),
            ("POST", "/api/v1/schedules/ro/pause"),
            ("POST", "/api/v1/schedules/ro/run-now"),
        ]:
            response = c.request(method, path, json={"name": "m:f", "state": "pending"})
            assert response.status_code in (404, 405), (method, path, response.text)
            assert response.json()["error"]["code"] in ("NOT_FOUND", "METHOD_NOT_ALLOWED")
        assert c.get(f"/api/v1/queues/{queue}/tasks/{task_id}").json()["state"] == "PENDING"
        assert c.get(f"/api/v1/queues/{queue}").json()["counts"]["pending"] == 1
        assert c.get("/api/v1/schedules").json()["schedules"][0]["paused"] is False
