"""FastAPI recipe: enqueue from an endpoint, await the result, stream progress.

    POST /reports                     enqueue a report; 202 with the task's id and links
    GET  /reports/{id}/result?wait=5  await the result up to ``wait`` seconds (aresult):
                                      200 with it, 202 while it runs, 404, 409 cancelled,
                                      500 failed
    GET  /reports/{id}/progress       Server-Sent Events: the task's progress as it comes
                                      (``progress`` events), then its outcome (one ``result``,
                                      ``failed`` or ``cancelled`` event)

The endpoints only enqueue and read: the work runs in ``orch worker`` processes, which
may be on other machines. Everything here is async (``adelay``, ``aresult``,
``aprogress``), so a waiting request holds no thread. The task reports its progress with
``current_task().aprogress(fraction, data)``; the stream reads it every
PROGRESS_EVERY_S and ends within a few ms of the task's end (``aresult`` wakes on it).
The handle is typed from the task's annotation (``TaskHandle[Report]``), and mypy checks
this file.

Run it (from the repository's root, with a Redis at ORCH_REDIS_URL):

    orch worker --app examples.fastapi_app -q reports
    uvicorn examples.fastapi_app:api --port 8000
    curl -X POST localhost:8000/reports -H 'content-type: application/json' -d '{"rows": 50}'
    curl 'localhost:8000/reports/<id>/result?wait=10'
    curl -N localhost:8000/reports/<id>/progress
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import FastAPI, HTTPException, Path, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from typing_extensions import TypedDict  # pydantic reads typing's only from Python 3.12

from orchestrator import (
    Orchestrator,
    Progress,
    ResultTimeout,
    TaskCancelled,
    TaskFailed,
    TaskHandle,
    TaskNotFound,
    current_task,
)

orch = Orchestrator()  # ORCH_REDIS_URL, else redis://localhost:6379/0
QUEUE = "reports"
STEP_S = 0.02  # the pretend work of one row
PROGRESS_EVERY_S = 0.25  # how often a progress stream looks at its task


class Report(TypedDict):
    rows: int
    total: int


@orch.task(name="examples.fastapi_app:build_report", queue=QUEUE, timeout=300)
async def build_report(rows: int) -> Report:
    """Pretend to build a report row by row, reporting progress every tenth of the way."""
    task = current_task()  # None when called directly, outside a worker
    every = max(1, rows // 10)
    total = 0
    for row in range(rows):
        await asyncio.sleep(STEP_S)
        total += row
        done = row + 1
        if task is not None and (done % every == 0 or done == rows):
            await task.aprogress(done / rows, data={"rows_done": done})  # LeaseLost: this attempt was reaped
    return {"rows": rows, "total": total}


# ------------------------------------------------------------------------ the API


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield
    await orch.aclose()  # the async Redis client belongs to the server's event loop


api = FastAPI(title="reports", lifespan=lifespan)

TaskId = Annotated[str, Path(pattern=r"^[0-9A-Za-z]{22}$", description="The id POST /reports answered.")]


class ReportRequest(BaseModel):
    rows: int = Field(ge=1, le=10_000, description="Rows to put in the report.")


class Accepted(BaseModel):
    id: str
    result: str
    progress: str


class Pending(BaseModel):
    id: str
    state: str


async def report_handle(task_id: str) -> TaskHandle[Report]:
    """The handle of a report task: 404 for an unknown id or a task that is not a report."""
    handle: TaskHandle[Report] = orch.handle(task_id, QUEUE)  # by id: typed here, from the task's annotation
    try:
        task = await handle.ainfo()
    except TaskNotFound:
        raise HTTPException(404, f"no report {task_id}") from None
    if task.name != build_report.name:  # only this endpoint's tasks are readable through it
        raise HTTPException(404, f"no report {task_id}")
    return handle


@api.post("/reports", status_code=202)
async def create_report(body: ReportRequest) -> Accepted:
    handle = await build_report.adelay(body.rows)
    base = f"/reports/{handle.id}"
    return Accepted(id=handle.id, result=f"{base}/result", progress=f"{base}/progress")


@api.get("/reports/{task_id}/result", responses={202: {"model": Pending, "description": "Not done yet."}})
async def report_result(
    task_id: TaskId,
    response: Response,
    wait: Annotated[float, Query(ge=0, le=30, description="Seconds to wait.")] = 5.0,
) -> Report | Pending:
    handle = await report_handle(task_id)
    try:
        return await handle.aresult(timeout=wait)  # a Report: mypy knows it from the handle's type
    except ResultTimeout:
        response.status_code = 202
        response.headers["Retry-After"] = "1"
        return Pending(id=task_id, state=(await handle.astatus()).value)
    except TaskCancelled:
        raise HTTPException(409, f"report {task_id} was cancelled") from None
    except TaskFailed as exc:  # the error's type only: its message and traceback stay in the record
        raise HTTPException(500, f"report {task_id} failed: {exc.error.get('type', 'Error')}") from None



@api.get(
    "/reports/{task_id}/progress",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "progress events, then the outcome"}},
)
async def report_progress(task_id: TaskId) -> StreamingResponse:
    handle = await report_handle(task_id)  # 404 here, before the stream starts
    return StreamingResponse(
        progress_events(handle), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


async def progress_events(handle: TaskHandle[Report]) -> AsyncIterator[str]:
    """Each new progress report, then the outcome; ends when the task does.

    One ``aresult()`` waits for the end the whole time (one subscription; it wakes within
    ms of the end) while the progress is read every PROGRESS_EVERY_S (one HMGET). A
    client that goes away closes this generator, and the wait is cancelled with it."""
    ending = asyncio.ensure_future(handle.aresult())
    last: Progress | None = None
    try:
        while True:
            await asyncio.wait([ending], timeout=PROGRESS_EVERY_S)
            progress = await handle.aprogress()
            if progress is not None and progress != last:
                last = progress
                yield sse("progress", {"fraction": progress.fraction, "data": progress.data})
            if ending.done():
                yield outcome_event(handle.id, ending)
                return
    finally:
        ending.cancel()


def outcome_event(task_id: str, ending: asyncio.Future[Report]) -> str:
    try:
        return sse("result", ending.result())
    except TaskCancelled:
        return sse("cancelled", {"id": task_id})
    except TaskFailed as exc:  # the error's type only, as GET .../result
        return sse("failed", {"id": task_id, "error": exc.error.get("type", "Error")})


def sse(event: str, data: object) -> str:
    """One Server-Sent Event: its type, and its data as one line of JSON."""
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"
