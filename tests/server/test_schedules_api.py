"""GET /api/v1/schedules on a real ``orch serve``: the schedules with their next fire times."""

from __future__ import annotations

import httpx

from orchestrator import Orchestrator


def test_the_http_api_lists_schedules(app: Orchestrator, client: httpx.Client) -> None:
    app.schedule("h", "tests:add", every=7, kwargs={"a": 1})
    [entry] = client.get("/api/v1/schedules").json()["schedules"]
    assert (entry["id"], entry["every"], entry["kwargs"], entry["paused"]) == ("h", 7, {"a": 1}, False)
    assert entry["next_ms"] % 7000 == 0 and entry["last_tick"] is None
