"""The REST API of ``orch serve`` on a real uvicorn process and a real redis-server: every
route against what the operator API (``Orchestrator``) reports, and the error mapping."""

from __future__ import annotations

import httpx
import pytest
import redis
from click.testing import CliRunner

from orchestrator import Orchestrator
from orchestrator.cli import orch
from orchestrator.errors import (
    CorruptQueue,
    InvalidPriority,
    InvalidTransition,
    MalformedRecord,
    OrchestratorError,
    QueueNotFound,
    RedisUnavailable,
    TaskNotFound,
    ValidationError,
)
from orchestrator.ids import uuid_hex
from orchestrator.script_calls import run
from orchestrator.server.problems import status_of
from tests.integration.test_operator import beat, claim, fail
from tests.redis_server import snapshot

from .conftest import BEARER, SAMPLE_APP, TOKENS, Serve, Server


def error_of(response: httpx.Response, status: int) -> dict[str, str]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    return dict(body["error"])


# ----------------------------------------------------------------------------- health


def test_health_and_readiness(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ok"}


def test_unreachable_redis_is_503_not_a_crash(serve: Serve) -> None:
    down = serve(redis_url="redis://127.0.0.1:1/0")
    with down.client() as c:
        assert c.get("/healthz").status_code == 200  # the process is up
        assert error_of(c.get("/readyz"), 503)["code"] == "REDIS_UNAVAILABLE"
        assert error_of(c.get("/api/v1/queues"), 503)["type"] == "RedisUnavailable"
        assert error_of(c.post("/api/v1/queues/q/tasks", json={"name": "m:f"}), 503)["code"] == "REDIS_UNAVAILABLE"


@pytest.mark.parametrize(
    ("exc", "status"),
    [(TaskNotFound("x"), 404), (QueueNotFound("x"), 404), (InvalidTransition("x"), 409), (ValidationError("x"), 422),
     (InvalidPriority("x"), 422), (MalformedRecord("x"), 409), (CorruptQueue("x"), 409), (RedisUnavailable("x"), 503),
     (OrchestratorError("x"), 500)],
)
def test_each_error_has_its_status(exc: OrchestratorError, status: int) -> None:
    assert status_of(exc) == status


# ---------------------------------------------------------------------------- enqueue


def test_enqueue_answers_201_then_200_for_an_existing_key(client: httpx.Client, app: Orchestrator, queue: str) -> None:
    body = {"name": "m:f", "args": [1, "a"], "kwargs": {"x": None}, "priority": 2, "key": "k1", "max_retries": 1,
            "timeout": 2.5}
    first = client.post(f"/api/v1/queues/{queue}/tasks", json=body)
    assert first.status_code == 201, first.text
    created = first.json()
    assert created["created"] is True and created["queue"] == queue
    again = client.post(f"/api/v1/queues/{queue}/tasks", json=body)
    assert again.status_code == 200 and again.json() == {**created, "created": False}
    task = app.get_task(created["id"], queue)
    assert (task.name, task.args, task.kwargs, task.priority, task.max_retries, task.timeout_ms) == (
        "m:f", [1, "a"], {"x": None}, 2, 1, 2500)


def test_enqueue_with_a_delay_is_scheduled(client: httpx.Client, app: Orchestrator, queue: str) -> None:
    created = client.post(f"/api/v1/queues/{queue}/tasks", json={"name": "m:f", "delay": 60}).json()
    assert app.get_task(created["id"], queue).state.value == "SCHEDULED"


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"name": "m:f", "priority": 12}, "priority", "priority must be an integer from 0 (runs first) to 9, not 12"),
        ({"name": "has space"}, "name", None),
        ({"name": "m:f", "delay": -1}, "delay", None),
        ({"name": "m:f", "timeout": 0}, "timeout", None),
        ({"name": "m:f", "args": [float("inf")]}, None, None),
        ({"name": "m:f", "priority": "1"}, "priority", "priority: Input should be a valid integer"),
        ({"name": "m:f", "prio": 1}, "prio", None),
        ({"args": []}, "name", None),
        ({"name": "m:f", "args": {"a": 1}}, "args", None),
    ],
)
def test_bad_input_is_422_with_one_line_and_nothing_written(
    client: httpx.Client, r: redis.Redis, queue: str, body: dict[str, object], field: str | None, message: str | None
) -> None:
    before = snapshot(r)
    content = httpx.Request("POST", "/", json=body).content if body.get("args") != [float("inf")] else (
        b'{"name": "m:f", "args": [1e999]}')
    response = client.post(f"/api/v1/queues/{queue}/tasks", content=content,
                           headers={"content-type": "application/json"})
    error = error_of(response, 422)
    assert "\n" not in error["message"] and error["code"]
    if field is not None:
        assert error["field"] == field, error
    if message is not None:
        assert error["message"] == message
    assert snapshot(r) == before


def test_a_body_that_is_not_json_is_422(client: httpx.Client, queue: str) -> None:
    response = client.post(f"/api/v1/queues/{queue}/tasks", content=b"{nope",
                           headers={"content-type": "application/json"})
    assert error_of(response, 422)["code"] == "INVALID"


def test_a_bad_queue_name_is_422(client: httpx.Client) -> None:
    error = error_of(client.post("/api/v1/queues/no%20space/tasks", json={"name": "m:f"}), 422)
    assert (error["code"], error["field"]) == ("INVALID_QUEUE_NAME", "queue")
    assert error_of(client.get("/api/v1/queues/no%20space"), 422)["code"] == "INVALID_QUEUE_NAME"


# ------------------------------------------------------------------------------ reads


def test_queues_and_one_queue_match_the_operator_api(client: httpx.Client, app: Orchestrator, queue: str) -> None:
    for _ in range(3):
        app.enqueue("m:f", queue=queue)
    app.enqueue("m:f", queue=queue, delay=60)
    claim(app, 1, queue)
    beat(app, "w1", queue)
    (stats,) = app.stats([queue])
    listed = {q["queue"]: q for q in client.get("/api/v1/queues").json()["queues"]}
    assert listed[queue]["counts"] == stats.counts and listed[queue]["workers"] == 1
    assert listed[queue]["paused"] is False
    one = client.get(f"/api/v1/queues/{queue}").json()
    assert one["counts"] == stats.counts and one["totals"] == stats.totals
    assert [w["id"] for w in one["workers"]] == ["w1"]
    error = error_of(client.get("/api/v1/queues/never-used"), 404)
    assert (error["code"], error["queue"]) == ("QUEUE_NOT_FOUND", "never-used")


def test_a_page_of_tasks_with_cursor_state_and_name(client: httpx.Client, app: Orchestrator, queue: str) -> None:
    ids = [app.enqueue("m:f" if i % 2 else "m:g", queue=queue).id for i in range(5)]
    first = client.get(f"/api/v1/queues/{queue}/tasks", params={"limit": 3}).json()
    assert first["state"] == "pending" and [t["id"] for t in first["tasks"]] == ids[:3]
    rest = client.get(f"/api/v1/queues/{queue}/tasks", params={"limit": 3, "cursor": first["cursor"]}).json()
    assert [t["id"] for t in rest["tasks"]] == ids[3:] and rest["cursor"] is None
    named = client.get(f"/api/v1/queues/{queue}/tasks", params={"name": "m:f"}).json()
    assert [t["id"] for t in named["tasks"]] == ids[1::2]
    assert client.get(f"/api/v1/queues/{queue}/tasks", params={"state": "failed"}).json()["tasks"] == []
    assert error_of(client.get(f"/api/v1/queues/{queue}/tasks", params={"state": "nope"}), 422)["field"] == "state"
    assert error_of(client.get(f"/api/v1/queues/{queue}/tasks", params={"limit": 0}), 422)["field"] == "limit"
    assert error_of(client.get(f"/api/v1/queues/{queue}/tasks", params={"cursor": "x"}), 422)["field"] == "cursor"


def test_one_task_with_its_events_under_both_paths(client: httpx.Client, app: Orchestrator, queue: str) -> None:
    task_id = app.enqueue("m:f", [1], queue=queue).id
    in_queue = client.get(f"/api/v1/queues/{queue}/tasks/{task_id}").json()
    by_id = client.get(f"/api/v1/tasks/{task_id}").json()
    assert in_queue == by_id
    assert (by_id["id"], by_id["queue"], by_id["args"]) == (task_id, queue, [1])
    hex_form = uuid_hex(task_id)  # (#18) the 32-hex form of the same UUID names the same task
    assert hex_form is not None and client.get(f"/api/v1/tasks/{hex_form}").json() == by_id
    assert client.get(f"/api/v1/queues/{queue}/tasks/{hex_form}").json() == by_id
    assert [e["event"] for e in by_id["events"]] == ["enqueued"]
    assert by_id["progress"] is None
    (lease,) = claim(app, 1, queue)
    at = run(app.redis, app._scripts(queue).progress(task_id, lease.token, "0.5", b'{"step":2}', max_bytes=100))
    reply = client.get(f"/api/v1/tasks/{task_id}").json()
    assert reply["progress"] == {"fraction": 0.5, "data": {"step": 2}, "at_ms": at}
    assert [e["event"] for e in reply["events"]][-1] == "progress"
    assert error_of(client.get(f"/api/v1/tasks/{'0' * 32}"), 404)["code"] == "NOT_FOUND"
    assert error_of(client.get(f"/api/v1/queues/{queue}/tasks/{'0' * 32}"), 404)["task_id"] == "0" * 32


def test_workers(client: httpx.Client, app: Orchestrator, queue: str) -> None:
    app.enqueue("m:f", queue=queue)
    beat(app, "w-http", queue, host="h1")
    found = {w["id"]: w for w in client.get("/api/v1/workers").json()["workers"]}
    assert found["w-http"]["queues"] == [queue] and found["w-http"]["alive"] is True
    only = client.get("/api/v1/workers", params={"queue": queue}).json()["workers"]
    assert [w["id"] for w in only] == ["w-http"]
    assert error_of(client.get("/api/v1/workers", params={"queue": "never-used"}), 404)["code"] == "QUEUE_NOT_FOUND"


# ---------------------------------------------------------------------------- actions


@pytest.mark.parametrize("by_id", [False, True])
def test_retry_and_cancel_one_task(client: httpx.Client, app: Orchestrator, queue: str, by_id: bool) -> None:
    def url(task_id: str, action: str) -> str:
        return f"/api/v1/tasks/{task_id}/{action}" if by_id else f"/api/v1/queues/{queue}/tasks/{task_id}/{action}"

    app.enqueue("m:f", queue=queue)
    (lease,) = claim(app, 1, queue)
    fail(app, lease)
    (attempt,) = client.get(f"/api/v1/tasks/{lease.task_id}").json()["history"]
    assert (attempt["worker"], attempt["outcome"], attempt["error"]) == ("w1", "failed", "ValueError: boom")
    assert client.post(url(lease.task_id, "retry")).json() == {
        "id": lease.task_id, "queue": queue, "action": "retried", "state": "pending"}
    error = error_of(client.post(url(lease.task_id, "retry")), 409)
    assert (error["code"], error["state"]) == ("BAD_STATE", "PENDING")
    assert client.post(url(lease.task_id, "cancel")).json()["action"] == "cancelled"
    assert error_of(client.post(url(lease.task_id, "cancel")), 409)["code"] == "BAD_STATE"
    running = app.enqueue("m:f", queue=queue).id
    claim(app, 1, queue)
    assert client.post(url(running, "cancel")).json() == {
        "id": running, "queue": queue, "action": "cancel_requested", "state": "running"}
    assert error_of(client.post(url("0" * 32, "retry")), 404)["code"] == "NOT_FOUND"


def test_retry_failed_and_purge_with_dry_run(client: httpx.Client, app: Orchestrator, queue: str) -> None:
    for _ in range(3):
        app.enqueue("m:f", queue=queue)
    for lease in claim(app, 2, queue):
        fail(app, lease)
    base = f"/api/v1/queues/{queue}"
    assert client.post(f"{base}/retry-failed", json={"dry_run": True}).json()["count"] == 2
    assert app.queue(queue).stats().counts["failed"] == 2
    assert client.post(f"{base}/retry-failed").json() == {"queue": queue, "count": 2, "dry_run": False,
                                                          "state": "failed"}
    assert client.post(f"{base}/purge", json={"state": "pending", "dry_run": True}).json()["count"] == 3
    assert app.queue(queue).stats().counts["pending"] == 3
    assert client.post(f"{base}/purge", json={"state": "pending"}).json()["count"] == 3
    assert app.queue(queue).stats().counts["pending"] == 0
    assert error_of(client.post(f"{base}/purge", json={"state": "running"}), 422)["field"] == "state"
    assert error_of(client.post(f"{base}/purge", json={}), 422)["field"] == "state"
    assert error_of(client.post(f"{base}/purge"), 422)["message"] == "body: Field required"
    assert error_of(client.post("/api/v1/queues/never-used/purge", json={"state": "failed"}), 404)["queue"] == (
        "never-used")


def test_pause_and_resume(client: httpx.Client, app: Orchestrator, queue: str) -> None:
    app.enqueue("m:f", queue=queue)
    assert client.post(f"/api/v1/queues/{queue}/pause").json() == {"queue": queue, "paused": True, "changed": True}
    assert app.queue(queue).is_paused()
    assert client.post(f"/api/v1/queues/{queue}/pause").json()["changed"] is False
    assert client.get(f"/api/v1/queues/{queue}").json()["paused"] is True
    listed = {q["queue"]: q for q in client.get("/api/v1/queues").json()["queues"]}
    assert listed[queue]["paused"] is True
    assert client.post(f"/api/v1/queues/{queue}/resume").json() == {"queue": queue, "paused": False,
                                                                      "changed": True}
    assert client.get(f"/api/v1/queues/{queue}").json()["paused"] is False
    assert not app.queue(queue).is_paused()
    assert error_of(client.post("/api/v1/queues/never-used/pause"), 404)["code"] == "QUEUE_NOT_FOUND"


def test_series_per_minute(client: httpx.Client, app: Orchestrator, queue: str) -> None:
    for _ in range(3):
        app.enqueue("m:f", queue=queue)
    body = client.get(f"/api/v1/queues/{queue}/series", params={"minutes": 5}).json()
    assert body["queue"] == queue and len(body["points"]) == 5
    assert [p.model_dump(mode="json") for p in app.queue(queue).series(5)][-1] == body["points"][-1]
    assert body["points"][-1]["enqueued"] == 3
    assert len(client.get(f"/api/v1/queues/{queue}/series").json()["points"]) == 60
    assert error_of(client.get(f"/api/v1/queues/{queue}/series", params={"minutes": 0}), 422)["field"] == "minutes"
    assert error_of(client.get(f"/api/v1/queues/{queue}/series", params={"minutes": 1441}), 422)["field"] == (
        "minutes")


def test_rollups_per_quarter_hour(client: httpx.Client, app: Orchestrator, queue: str) -> None:
    app.enqueue("m:f", queue=queue)
    while run(app.redis, app._scripts(queue).rollup(8)).more:
        pass
    body = client.get(f"/api/v1/queues/{queue}/rollups", params={"hours": 2}).json()
    assert body["queue"] == queue and len(body["points"]) == 8
    assert body["points"] == [p.model_dump(mode="json") for p in app.queue(queue).rollups(2)]
    assert len(client.get(f"/api/v1/queues/{queue}/rollups").json()["points"]) == 96
    assert error_of(client.get(f"/api/v1/queues/{queue}/rollups", params={"hours": 0}), 422)["field"] == "hours"
    assert error_of(client.get(f"/api/v1/queues/{queue}/rollups", params={"hours": 169}), 422)["field"] == "hours"
    assert error_of(client.get("/api/v1/queues/never-used/rollups"), 404)["code"] == "QUEUE_NOT_FOUND"
    listed = {q["queue"]: q for q in client.get("/api/v1/queues").json()["queues"]}
    assert listed[queue]["load"] == 0.0 and listed[queue]["counts"]["pending"] == 1


def test_metrics_are_prometheus_text_read_from_redis(api: Server, app: Orchestrator, queue: str) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    app.enqueue("m:f", queue=queue)
    response = httpx.get(api.base_url + "/metrics")  # no token needed
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(response.text) for s in family.samples}
    assert samples[("orch_tasks_enqueued_total", (("queue", queue), ("task", "m:f")))] == 1
    assert samples[("orch_queue_tasks", (("queue", queue), ("state", "pending")))] == 1


@pytest.mark.parametrize("by_id", [False, True])
def test_run_now_and_delete(client: httpx.Client, app: Orchestrator, queue: str, by_id: bool) -> None:
    base = "/api/v1/tasks" if by_id else f"/api/v1/queues/{queue}/tasks"
    later = app.enqueue("m:f", queue=queue, delay=600).id
    assert client.post(f"{base}/{later}/run-now").json()["state"] == "pending"
    assert app.get_task(later, queue).state.value == "PENDING"
    assert error_of(client.post(f"{base}/{later}/run-now"), 409)["code"] == "BAD_STATE"
    assert client.delete(f"{base}/{later}").json() == {"id": later, "queue": queue, "action": "deleted",
                                                       "state": None}
    assert error_of(client.get(f"/api/v1/queues/{queue}/tasks/{later}"), 404)["code"] == "NOT_FOUND"
    running = app.enqueue("m:f", queue=queue).id
    claim(app, 1, queue)
    assert error_of(client.delete(f"{base}/{running}"), 409)["code"] == "BAD_STATE"


# ------------------------------------------------------------------------------ --app


@pytest.fixture(scope="module")
def app_server(serve: Serve) -> Server:
    return serve("--app", SAMPLE_APP, env=TOKENS, headers=BEARER)


def test_with_app_a_registered_task_takes_its_queue_options_and_signature(
    app_server: Server, app: Orchestrator, r: redis.Redis
) -> None:
    with app_server.client() as c:
        created = c.post("/api/v1/queues/default/tasks", json={"name": "tests:add", "args": [1, 2]})
        assert created.status_code == 201, created.text
        before = snapshot(r)
        error = error_of(c.post("/api/v1/queues/default/tasks", json={"name": "tests:add", "args": [1, 2, 3]}), 422)
        assert error["message"] == "arguments do not fit task tests:add(a, b): too many positional arguments"
        error = error_of(c.post("/api/v1/queues/default/tasks", json={"name": "m:f"}), 422)
        assert error["field"] == "name" and "not registered" in error["message"] and "tests:add" in error["message"]
        error = error_of(c.post("/api/v1/queues/other/tasks", json={"name": "tests:add", "args": [1, 2]}), 422)
        assert error["field"] == "queue" and "declared on queue 'default'" in error["message"]
        assert snapshot(r) == before
    task = app.get_task(created.json()["id"], "default")
    assert task.name == "tests:add"


def test_serve_refuses_an_app_that_registers_no_task() -> None:
    result = CliRunner().invoke(orch, ["serve", "--app", "orchestrator.version"])
    assert result.exit_code == 2 and "registers no task" in result.output
