"""examples/fastapi_app.py end to end: uvicorn on a free port, a real worker, the suite's Redis.

Enqueue from the endpoint, await the result (200), answer 202 while a report is not done,
404 for ids that are not reports, 409 for a cancelled one, 500 for a failed one, 422 for
bad input; stream a running report's progress (Server-Sent Events, read as they arrive)
and then its outcome.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import httpx
import pytest

from examples import fastapi_app
from orchestrator import Orchestrator, TaskState
from orchestrator.redis_local import LocalRedis
from tests.examples.running import pointed_at, running_worker, serving
from tests.integration.procs import wait_for

MISSING = "0" * 22  # a task id: 22 base62 characters


@pytest.fixture
def orch(app: Orchestrator, redis_server: LocalRedis) -> Iterator[Orchestrator]:
    with pointed_at(fastapi_app.orch, redis_server.url) as example:
        yield example


@pytest.fixture
def client(orch: Orchestrator) -> Iterator[httpx.Client]:
    with serving(fastapi_app.api) as url, httpx.Client(base_url=url, timeout=20) as c:
        yield c


def test_a_report_is_enqueued_and_its_result_awaited(orch: Orchestrator, client: httpx.Client) -> None:
    accepted = client.post("/reports", json={"rows": 5})
    assert accepted.status_code == 202
    body = accepted.json()
    assert body["result"] == f"/reports/{body['id']}/result" and body["progress"] == f"/reports/{body['id']}/progress"
    assert orch.handle(body["id"], fastapi_app.QUEUE).info().name == fastapi_app.build_report.name
    with running_worker(orch, "examples.fastapi_app", queues=(fastapi_app.QUEUE,)):
        done = client.get(body["result"], params={"wait": 10})
    assert (done.status_code, done.json()) == (200, {"rows": 5, "total": 10})


def test_a_report_not_done_within_the_wait_is_202_with_its_state(client: httpx.Client) -> None:
    body = client.post("/reports", json={"rows": 3}).json()  # no worker: it stays pending
    waiting = client.get(body["result"], params={"wait": 0.05})
    assert waiting.status_code == 202 and waiting.headers["retry-after"] == "1"
    assert waiting.json() == {"id": body["id"], "state": "PENDING"}


def test_ids_that_are_not_reports_are_404_and_bad_input_422(orch: Orchestrator, client: httpx.Client) -> None:
    assert client.get(f"/reports/{MISSING}/result").status_code == 404
    other = orch.enqueue("somewhere:else", queue=fastapi_app.QUEUE)  # another task of the same queue
    assert client.get(f"/reports/{other.id}/result").json() == {"detail": f"no report {other.id}"}
    assert client.get("/reports/not-an-id/result").status_code == 422
    assert client.post("/reports", json={"rows": 0}).status_code == 422
    assert client.get(f"/reports/{MISSING}/result", params={"wait": 31}).status_code == 422


def test_a_cancelled_report_is_409_and_a_failed_one_500(orch: Orchestrator, client: httpx.Client) -> None:
    cancelled = client.post("/reports", json={"rows": 3}).json()
    orch.cancel(cancelled["id"], fastapi_app.QUEUE)
    answer = client.get(cancelled["result"], params={"wait": 5})
    assert (answer.status_code, answer.json()) == (409, {"detail": f"report {cancelled['id']} was cancelled"})
    slow = fastapi_app.build_report.enqueue([500], timeout=0.05, max_retries=0)  # 10 s of rows in 50 ms: fails
    with running_worker(orch, "examples.fastapi_app", queues=(fastapi_app.QUEUE,)):
        failed = client.get(f"/reports/{slow.id}/result", params={"wait": 10})
    assert (failed.status_code, failed.json()) == (500, {"detail": f"report {slow.id} failed: TaskTimeout"})


def read_events(
    response: httpx.Response, on_event: Callable[[str, object], None] | None = None
) -> list[tuple[str, object]]:
    """The (event, data) pairs of a Server-Sent Events response, read as they arrive;
    ``on_event(event, data)`` is called on each as it comes."""
    events: list[tuple[str, object]] = []
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if line:
            name, _, value = line.partition(": ")
            fields[name] = value
            continue
        event = (fields.pop("event"), json.loads(fields.pop("data")))
        if on_event is not None:
            on_event(*event)
        events.append(event)
    return events


def test_progress_streams_while_the_report_runs_then_its_result(orch: Orchestrator, client: httpx.Client) -> None:
    body = client.post("/reports", json={"rows": 60}).json()  # 1.2 s of rows, progress every 6
    handle = orch.handle(body["id"], fastapi_app.QUEUE)
    states_seen: list[TaskState] = []

    def on_event(event: str, data: object) -> None:
        if event == "progress":
            states_seen.append(handle.status())  # the task still runs: the stream is not buffered to the end

    with (
        running_worker(orch, "examples.fastapi_app", queues=(fastapi_app.QUEUE,)),
        client.stream("GET", body["progress"]) as stream,
    ):
        assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
        events = read_events(stream, on_event)
    assert events[-1] == ("result", {"rows": 60, "total": 1770})
    progress = [data for event, data in events[:-1]]
    assert {event for event, _ in events[:-1]} == {"progress"} and len(progress) >= 2
    fractions = [p["fraction"] for p in progress]  # type: ignore[index]
    assert fractions == sorted(set(fractions)) and 0 < fractions[0] < 1 and fractions[-1] == 1
    assert progress[-1] == {"fraction": 1, "data": {"rows_done": 60}}
    assert states_seen[0] is TaskState.RUNNING


def test_the_stream_of_an_ended_report_is_its_outcome(orch: Orchestrator, client: httpx.Client) -> None:
    assert client.get(f"/reports/{MISSING}/progress").status_code == 404
    cancelled = client.post("/reports", json={"rows": 3}).json()
    orch.cancel(cancelled["id"], fastapi_app.QUEUE)
    with client.stream("GET", cancelled["progress"]) as stream:
        assert read_events(stream) == [("cancelled", {"id": cancelled["id"]})]
    slow = fastapi_app.build_report.enqueue([500], timeout=0.05, max_retries=0)
    with (
        running_worker(orch, "examples.fastapi_app", queues=(fastapi_app.QUEUE,)),
        client.stream("GET", f"/reports/{slow.id}/progress") as stream,
    ):
        assert read_events(stream) == [("failed", {"id": slow.id, "error": "TaskTimeout"})]


def test_a_client_that_leaves_the_stream_ends_its_wait(orch: Orchestrator, client: httpx.Client) -> None:
    body = client.post("/reports", json={"rows": 500}).json()  # 10 s of rows
    channel = orch.keys(fastapi_app.QUEUE).finished(body["id"])

    def listeners() -> int:
        reply = orch.redis.execute_command("PUBSUB", "SHARDNUMSUB", channel)  # type: ignore[no-untyped-call]
        return int(reply[1])  # [channel, subscribers]

    with running_worker(orch, "examples.fastapi_app", queues=(fastapi_app.QUEUE,)):
        with client.stream("GET", body["progress"]) as stream:
            lines = stream.iter_lines()
            assert next(lines) == "event: progress"  # the report runs and the stream waits on its end
            assert listeners() == 1
        wait_for(lambda: listeners() == 0, "the server to stop waiting once the client left", timeout=3)
        assert orch.handle(body["id"], fastapi_app.QUEUE).status() is TaskState.RUNNING  # not the end: the leaving
