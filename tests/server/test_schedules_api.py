"""GET /api/v1/schedules on a real ``orch serve``: the schedules with their next fire times."""

from __future__ import annotations

import httpx

from orchestrator import Orchestrator


def test_the_http_api_lists_schedules(app: Orchestrator, client: httpx.Client) -> None:
    app.schedule("h", "tests:add", every=7, kwargs={"a": 1})
    [entry] = client.get("/api/v1/schedules").json()["schedules"]
    assert (entry["id"], entry["every"], entry["kwargs"], entry["paused"]) == ("h", 7, {"a": 1}, False)
    assert entry["next_ms"] % 7000 == 0 and entry["last_tick"] is None


def test_pause_resume_and_run_now_a_schedule(app: Orchestrator, client: httpx.Client) -> None:
    app.schedule("ops/ping:1", "tests:add", every=10, args=[1, 2], queue="sched_api")  # an id with '/' and ':'
    path = "/api/v1/schedules/ops/ping:1"
    assert client.post(f"{path}/pause").json() == {"schedule": "ops/ping:1", "paused": True, "changed": True}
    assert client.post(f"{path}/pause").json()["changed"] is False
    assert app.schedules()[0].paused
    assert client.post(f"{path}/resume").json() == {"schedule": "ops/ping:1", "paused": False, "changed": True}
    ran = client.post(f"{path}/run-now").json()
    assert ran["queue"] == "sched_api" and app.get_task(ran["id"]).args == [1, 2]
    [info] = app.schedules()
    assert not info.paused and info.last_tick is None  # run-now leaves its ticks alone
    for action in ("pause", "resume", "run-now"):
        missing = client.post(f"/api/v1/schedules/nope/{action}")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "SCHEDULE_NOT_FOUND", missing.text
