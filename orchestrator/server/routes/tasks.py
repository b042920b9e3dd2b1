"""Routes of tasks: a page of a queue's tasks, one task with its events, enqueue by name, and
retry, cancel, run-now and delete of one task (under its queue, or found by id alone).

Owns translating these requests into operator API calls and their results into replies,
and the ``--app`` rules of an HTTP enqueue: with a registry, only its task names are taken,
each on its declared queue, with its options and signature check (as ``orch enqueue --app``).
Does not read Redis itself.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Query, Response

from ...errors import ValidationError
from ...keys import validate_queue_name
from ...models import TaskState
from ...queues import MAX_PAGE, Queue
from ...records import TaskPage
from ..deps import App, ListedState, QueueName, TaskId, Tasks
from ..problems import COMMON, documented
from ..schemas import EnqueueBody, Enqueued, TaskAction, TaskDetail

EVENTS_SCAN = 1000  # the latest events of a queue searched for one task's


def detail(queue: Queue, task_id: str) -> TaskDetail:
    info = queue.task(task_id)
    return TaskDetail.model_validate({**dict(info), "events": queue.task_events(task_id, scan=EVENTS_SCAN)})


def check_registered(tasks: Tasks, name: str, queue: str) -> None:
    """With ``--app``: ``name`` must be one of its tasks, enqueued on its declared queue."""
    if tasks is None:
        return
    task = tasks.get(name)
    if task is None:
        names = sorted(tasks)
        known = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "") or "none"
        raise ValidationError(f"task {name!r} is not registered by the server's --app (registered: {known})",
                              field="name", queue=queue)
    declared = task.options.queue
    if declared != queue:
        raise ValidationError(f"task {name!r} is declared on queue {declared!r}, not {queue!r}: "
                              f"enqueue it at /api/v1/queues/{declared}/tasks", field="queue", queue=queue)


# One task's actions: (url part, HTTP method, summary, operator call -> (action, state after)).
Act = Callable[[Queue, str], tuple[str, str | None]]


def _retry(queue: Queue, task_id: str) -> tuple[str, str | None]:
    queue.retry(task_id)
    return "retried", "pending"


def _cancel(queue: Queue, task_id: str) -> tuple[str, str | None]:
    after = queue.cancel(task_id)
    if after is TaskState.CANCELLED:
        return "cancelled", "cancelled"
    return "cancel_requested", after.value.lower()


def _run_now(queue: Queue, task_id: str) -> tuple[str, str | None]:
    queue.run_now(task_id)
    return "run_now", "pending"


def _delete(queue: Queue, task_id: str) -> tuple[str, str | None]:
    queue.delete(task_id)
    return "deleted", None


ACTIONS: list[tuple[str, str, str, Act]] = [
    ("/retry", "POST", "Move a failed task back to pending, attempts reset", _retry),
    ("/cancel", "POST", "Cancel a task: at once, or a running one by its worker", _cancel),
    ("/run-now", "POST", "Make a scheduled or retrying task pending at once", _run_now),
    ("", "DELETE", "Delete a task that is not running, with its record", _delete),
]


def router(read_only: bool) -> APIRouter:
    api = APIRouter(tags=["tasks"], responses=documented(*COMMON))

    @api.get("/queues/{queue}/tasks", summary="A page of a queue's tasks in one state", responses=documented(404))
    def list_tasks(
        app: App,
        queue: QueueName,
        state: Annotated[ListedState, Query(description="done: success and cancelled")] = "pending",
        name: Annotated[str | None, Query(description="Only tasks of this name.")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        cursor: Annotated[str | None, Query(description="The cursor of the previous page.")] = None,
    ) -> TaskPage:
        return app.queue(queue, must_exist=True).tasks(state, limit=limit, cursor=cursor, name=name)

    @api.get("/queues/{queue}/tasks/{task_id}", summary="A task's record and its events", responses=documented(404))
    def get_task(app: App, queue: QueueName, task_id: TaskId) -> TaskDetail:
        return detail(app.queue(queue), task_id)

    @api.get("/tasks/{task_id}", summary="A task's record and its events, in whichever queue holds it",
             responses=documented(404))
    def find_task(app: App, task_id: TaskId) -> TaskDetail:
        return detail(app.find_queue(task_id), task_id)

    if read_only:
        return api

    @api.post(
        "/queues/{queue}/tasks", status_code=201, summary="Enqueue a task by name",
        responses={200: {"model": Enqueued, "description": "A key returned an existing task (created: false)"}},
    )
    def enqueue(app: App, tasks: Tasks, queue: QueueName, body: EnqueueBody, response: Response) -> Enqueued:
        validate_queue_name(queue)
        check_registered(tasks, body.name, queue)
        handle = app.enqueue(
            body.name, body.args, body.kwargs, queue=queue, priority=body.priority, delay=body.delay,
            key=body.key, unique_key=body.unique_key, max_retries=body.max_retries, timeout=body.timeout,
        )
        if not handle.created:
            response.status_code = 200
        return Enqueued(id=handle.id, queue=handle.queue, created=handle.created)

    for path, verb, summary, act in ACTIONS:
        _add_action(api, path, verb, summary, act)
    return api


def _add_action(api: APIRouter, path: str, method: str, summary: str, act: Act) -> None:
    def in_queue(app: App, queue: QueueName, task_id: TaskId) -> TaskAction:
        return _acted(app.queue(queue), task_id, act)

    def by_id(app: App, task_id: TaskId) -> TaskAction:
        return _acted(app.find_queue(task_id), task_id, act)

    name = path.strip("/").replace("-", "_") or "delete"
    for prefix, endpoint, where in (("/queues/{queue}/tasks/{task_id}", in_queue, "_in_queue"),
                                    ("/tasks/{task_id}", by_id, "")):
        api.add_api_route(prefix + path, endpoint, methods=[method], summary=summary, response_model=TaskAction,
                          responses=documented(404, 409), name=f"{name}_task{where}",
                          operation_id=f"{name}_task{where}")


def _acted(queue: Queue, task_id: str, act: Act) -> TaskAction:
    action, state = act(queue, task_id)
    return TaskAction(id=task_id, queue=queue.name, action=action, state=state)


