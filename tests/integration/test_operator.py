"""The operator API (``app.queue(name)``, ``app.stats()``, ...) on a real redis-server."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone

import orjson
import pytest
import redis

from orchestrator import Orchestrator, TaskState
from orchestrator.errors import (
    InvalidQueueName,
    InvalidTransition,
    MalformedRecord,
    QueueNotFound,
    ResultTimeout,
    TaskCancelled,
    TaskFailed,
    TaskNotFound,
    ValidationError,
)
from orchestrator.queues import Queue
from orchestrator.records import Event, QueueStats, TaskInfo
from orchestrator.script_calls import run
from orchestrator.transitions import Lease

ERROR = orjson.dumps({"type": "ValueError", "message": "boom", "traceback": "Traceback: ..."})


def claim(app: Orchestrator, n: int = 1, queue: str = "default", worker: str = "w1") -> list[Lease]:
    leases = run(app.redis, app._scripts(queue).claim(worker, n, 60_000))
    assert len(leases) == n
    return leases


def fail(app: Orchestrator, lease: Lease, mode: str = "fatal") -> TaskState:
    return run(app.redis, app._scripts(lease.queue).fail(lease.task_id, lease.token, ERROR, mode=mode)).state


def complete(app: Orchestrator, lease: Lease) -> None:
    run(app.redis, app._scripts(lease.queue).complete(lease.task_id, lease.token, b'"ok"', 0))


def beat(app: Orchestrator, worker: str, queue: str = "default", lease_ms: int = 30_000, **info: str) -> None:
    run(app.redis, app._scripts(queue).heartbeat(worker, lease_ms, info, []))


# ----------------------------------------------------------------------------- queues


def test_queue_is_the_operator_api_and_checks_its_name(app: Orchestrator) -> None:
    assert isinstance(app.queue("emails"), Queue) and app.queue("emails").name == "emails"
    with pytest.raises(InvalidQueueName):
        app.queue("no/slash")
    assert app.queues() == []
    app.enqueue("m:f", queue="b")
    app.enqueue("m:f", queue="a")
    assert app.queues() == ["a", "b"]


def test_stats_are_typed_numbers_and_utc_times(app: Orchestrator) -> None:
    for _ in range(3):
        app.enqueue("m:f")
    app.enqueue("m:f", delay=60)
    leases = claim(app, 2)
    complete(app, leases[0])
    beat(app, "w1", host="h1", pid="42", concurrency="4", running="1", load="0.25", started_at="1700000000000")
    (stats,) = app.stats(["default"])
    assert isinstance(stats, QueueStats) and stats.queue == "default"
    assert stats.counts == {
        "pending": 1, "scheduled": 1, "retrying": 0, "running": 1, "success": 1, "failed": 0, "cancelled": 0
    }
    assert stats.paused is False and app.queue("default").counts() == stats.counts
    assert (stats.totals["enqueued"], stats.totals["succeeded"], stats.totals["runs"]) == (4, 1, 1)
    assert stats.time.tzinfo is timezone.utc and stats.notes == []
    (worker,) = stats.workers
    assert (worker.id, worker.alive, worker.pid, worker.load, worker.concurrency) == ("w1", True, 42, 0.25, 4)
    assert worker.started_at == datetime(2023, 11, 14, 22, 13, 20, tzinfo=timezone.utc)
    assert worker.heartbeat_deadline is not None and worker.heartbeat_deadline > stats.time
    dumped = stats.model_dump(mode="json")
    assert dumped["workers"][0]["started_at"] == "2023-11-14T22:13:20.000Z"
    json.dumps(dumped)


def test_unknown_queue_is_an_error_with_its_name(app: Orchestrator) -> None:
    app.enqueue("m:f", queue="known")
    with pytest.raises(QueueNotFound, match=r"no queue 'nope' \(known: known\)") as info:
        app.stats(["nope"])
    assert (info.value.queue, info.value.code) == ("nope", "QUEUE_NOT_FOUND")
    with pytest.raises(QueueNotFound):
        app.events(["nope"])
    beat(app, "w1", queue="served-only")  # a queue a worker serves is known even before any task
    assert app.workers(["served-only"])[0].id == "w1"


def test_workers_once_each_with_their_queues(app: Orchestrator) -> None:
    app.enqueue("m:f", queue="a")
    app.enqueue("m:f", queue="b")
    beat(app, "w1", queue="a")
    beat(app, "w1", queue="b")
    beat(app, "w2", queue="b")
    workers = app.workers()
    assert [(w.id, w.queues) for w in workers] == [("w1", ["a", "b"]), ("w2", ["b"])]


# ------------------------------------------------------------------------------ tasks


def test_find_a_task_by_id_in_any_queue(app: Orchestrator) -> None:
    task_id = app.enqueue("m:f", [1], queue="high", priority=2).id
    info = app.task_info(task_id)
    assert isinstance(info, TaskInfo)
    assert (info.queue, info.state, info.priority, info.args) == ("high", TaskState.PENDING, 2, [1])
    assert info.created_at is not None and info.created_at.tzinfo is timezone.utc
    assert app.get_task(task_id).queue == "high"  # no queue needed (it assumed "default" before)
    with pytest.raises(TaskNotFound) as missing:
        app.task_info("ghost")
    assert (missing.value.task_id, missing.value.code) == ("ghost", "NOT_FOUND")
    with pytest.raises(TaskNotFound) as elsewhere:
        app.queue("other").task(task_id)
    assert (elsewhere.value.task_id, elsewhere.value.queue) == (task_id, "other")


def test_list_pending_tasks_page_by_page_in_claim_order(app: Orchestrator) -> None:
    ids = [app.enqueue("m:f", priority=p).id for p in (5, 5, 1, 9, 5, 0, 5)]
    expected = [ids[5], ids[2], ids[0], ids[1], ids[4], ids[6], ids[3]]
    queue = app.queue("default")
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = queue.tasks("pending", limit=3, cursor=cursor)
        seen += [t.id for t in page.tasks]
        pages += 1
        cursor = page.cursor
        if cursor is None:
            break
    assert seen == expected and pages <= 4
    assert page.model_dump(mode="json")["state"] == "pending"


def test_a_cursor_survives_its_task_leaving_the_index(app: Orchestrator) -> None:
    ids = [app.enqueue("m:f").id for _ in range(5)]
    queue = app.queue("default")
    first = queue.tasks(TaskState.PENDING, limit=2)
    assert [t.id for t in first.tasks] == ids[:2]
    queue.cancel(ids[1])  # the cursor's task is gone from pending
    rest = queue.tasks("pending", limit=10, cursor=first.cursor)
    assert [t.id for t in rest.tasks] == ids[2:] and rest.cursor is None


def test_states_that_share_an_index_are_told_apart(app: Orchestrator) -> None:
    delayed = app.enqueue("m:f", delay=60).id
    retrying = app.enqueue("m:f", max_retries=3).id
    done = app.enqueue("m:f").id
    cancelled = app.enqueue("m:f").id
    (l1,) = claim(app)
    assert fail(app, l1, mode="retry") is TaskState.RETRYING
    (l2,) = claim(app)
    complete(app, l2)
    app.cancel(cancelled)
    queue = app.queue("default")
    assert [t.id for t in queue.tasks("scheduled").tasks] == [delayed]
    assert [t.id for t in queue.tasks("retrying").tasks] == [retrying]
    assert [t.id for t in queue.tasks("success").tasks] == [done]
    assert [t.id for t in queue.tasks("cancelled").tasks] == [cancelled]
    assert {t.id for t in queue.tasks("done").tasks} == {done, cancelled}
    assert queue.counts() == {
        "pending": 0, "scheduled": 1, "retrying": 1, "running": 0, "success": 1, "failed": 0, "cancelled": 1
    }


def test_done_pages_through_success_then_cancelled(app: Orchestrator) -> None:
    ids = [app.enqueue("m:f").id for _ in range(5)]
    for lease in claim(app, 3):
        complete(app, lease)
    for task_id in ids[3:]:
        app.cancel(task_id)
    queue, seen, cursor, pages = app.queue("default"), [], None, 0
    while True:
        page = queue.tasks("done", limit=2, cursor=cursor)
        seen += [t.id for t in page.tasks]
        pages, cursor = pages + 1, page.cursor
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 5 and pages <= 4
    assert [t.state for t in queue.tasks("done", limit=10).tasks] == [TaskState.SUCCESS] * 3 + [TaskState.CANCELLED] * 2
    with pytest.raises(ValidationError):
        queue.tasks("success", cursor="1/1.0:x")  # one index: no second part to go on in
    assert queue.purge("done", dry_run=True) == 5
    assert queue.purge("done") == 5 and queue.counts()["success"] == queue.counts()["cancelled"] == 0


def test_pause_and_resume(app: Orchestrator) -> None:
    queue = app.queue("default")
    app.enqueue("m:f")
    assert queue.pause() is True and queue.pause() is False
    assert queue.is_paused() and queue.stats().paused
    assert run(app.redis, app._scripts("default").claim("w1", 5, 60_000)) == []
    app.enqueue("m:f")  # enqueue goes on
    assert queue.resume() is True and queue.resume() is False
    assert not queue.is_paused() and not queue.stats().paused
    assert len(claim(app, 2)) == 2
    assert [e.event for e in queue.events(10) if e.event in ("paused", "resumed")] == ["paused", "resumed"]


def test_run_now_and_delete_find_the_task_in_any_queue(app: Orchestrator) -> None:
    delayed = app.enqueue("m:f", queue="other", delay=3600).id
    assert app.run_now(delayed) is TaskState.SCHEDULED
    assert app.get_task(delayed).state is TaskState.PENDING and app.get_task(delayed).ready_at is not None
    with pytest.raises(InvalidTransition, match="only SCHEDULED and RETRYING") as refused:
        app.run_now(delayed, queue="other")
    assert (refused.value.state, refused.value.task_id, refused.value.queue) == ("PENDING", delayed, "other")
    assert app.delete(delayed) is TaskState.PENDING
    with pytest.raises(TaskNotFound):
        app.delete(delayed)
    running = app.enqueue("m:f").id
    claim(app)
    with pytest.raises(InvalidTransition, match="cancel it first"):
        app.queue("default").delete(running)
    assert app.queue("other").stats().totals["deleted"] == 1


def test_retrying_tasks_can_be_purged(app: Orchestrator) -> None:
    retrying = app.enqueue("m:f", max_retries=3).id
    (lease,) = claim(app)
    assert fail(app, lease, mode="retry") is TaskState.RETRYING
    queue = app.queue("default")
    assert queue.purge("retrying", dry_run=True) == 1 and queue.purge("retrying") == 1
    with pytest.raises(TaskNotFound):
        queue.task(retrying)
    with pytest.raises(ValidationError, match="purge takes"):
        queue.purge("running")


def test_list_by_name(app: Orchestrator) -> None:
    wanted = [app.enqueue("m:wanted" if i % 3 == 0 else "m:other").id for i in range(9)]
    page = app.queue("default").tasks("pending", name="m:wanted", limit=10)
    assert [t.id for t in page.tasks] == wanted[0::3] and page.cursor is None
    first = app.queue("default").tasks("pending", name="m:wanted", limit=2)  # fills up inside one batch
    rest = app.queue("default").tasks("pending", name="m:wanted", limit=2, cursor=first.cursor)
    assert [t.id for t in first.tasks + rest.tasks] == wanted[0::3]  # none skipped


def test_listing_refuses_bad_input(app: Orchestrator) -> None:
    queue = app.queue("default")
    with pytest.raises(ValidationError, match="unknown state 'stuck'") as bad_state:
        queue.tasks("stuck")
    assert bad_state.value.field == "state"
    with pytest.raises(ValidationError) as bad_limit:
        queue.tasks("pending", limit=0)
    assert bad_limit.value.field == "limit"
    with pytest.raises(ValidationError) as bad_cursor:
        queue.tasks("pending", cursor="nonsense")
    assert bad_cursor.value.field == "cursor"


# ---------------------------------------------------------------------------- changes


def test_retry_one_and_all_failed_with_a_dry_run_first(app: Orchestrator) -> None:
    ids = [app.enqueue("m:f", queue="q").id for _ in range(3)]
    for lease in claim(app, 3, queue="q"):
        fail(app, lease)
    queue = app.queue("q")
    app.retry(ids[0])  # found in its queue by id
    assert app.get_task(ids[0]).state is TaskState.PENDING
    assert queue.retry_failed(dry_run=True) == 2
    assert queue.stats().counts["failed"] == 2  # a dry run moves nothing
    assert queue.retry_failed() == 2
    assert queue.stats().counts == {
        "pending": 3, "scheduled": 0, "retrying": 0, "running": 0, "success": 0, "failed": 0, "cancelled": 0
    }


def test_refusals_carry_fields(app: Orchestrator) -> None:
    task_id = app.enqueue("m:f").id
    with pytest.raises(InvalidTransition) as not_failed:
        app.retry(task_id)
    exc = not_failed.value
    assert (exc.code, exc.task_id, exc.queue, exc.state) == ("BAD_STATE", task_id, "default", "PENDING")
    assert str(exc) == f"cannot retry task {task_id}: it is PENDING, only FAILED tasks can be retried"
    app.cancel(task_id)
    with pytest.raises(InvalidTransition) as ended:
        app.queue("default").cancel(task_id)
    assert (ended.value.state, ended.value.to_dict()["error"]) == ("CANCELLED", "InvalidTransition")
    with pytest.raises(TaskNotFound) as ghost:
        app.queue("default").retry("ghost")
    assert (ghost.value.task_id, ghost.value.queue) == ("ghost", "default")


def test_purge_counts_first_then_deletes(app: Orchestrator, r: redis.Redis) -> None:
    running = app.enqueue("m:f").id
    for _ in range(3):
        app.enqueue("m:f")
    queue = app.queue("default")
    assert queue.purge("pending", dry_run=True) == 4
    claim(app)  # the first one runs: never purged
    assert queue.purge("pending") == 3
    assert queue.stats().counts["pending"] == 0 and queue.stats().counts["running"] == 1
    assert app.task_info(running).state is TaskState.RUNNING
    with pytest.raises(ValidationError) as running_state:
        queue.purge("running")
    assert running_state.value.field == "state"


def test_async_lookup_and_cancel_find_the_queue(app: Orchestrator) -> None:
    task_id = app.enqueue("m:f", queue="far").id

    async def main() -> tuple[str, TaskState]:
        try:
            return (await app.aget_task(task_id)).queue, await app.acancel(task_id)
        finally:
            await app.aclose()

    assert asyncio.run(main()) == ("far", TaskState.CANCELLED)


# ------------------------------------------------------------------- hostile records


def test_bad_values_become_notes_not_tracebacks(app: Orchestrator, r: redis.Redis) -> None:
    task_id = app.enqueue("m:f").id
    beat(app, "w1", pid="x")
    r.hset("orch:{default}:worker:w1", mapping={"last_seen": "abc", "started_at": "9000000000000000"})
    r.hset("orch:{default}:stats", "enqueued", "lots")
    r.zadd("orch:{default}:workers", {"w-inf": float("inf")})
    r.xadd("orch:{default}:events", {b"event": b"enqueued", b"task": b"\xff\xfe", b"priority": b"high"})
    (stats,) = app.stats()
    assert "enqueued" not in stats.totals and any("enqueued" in note for note in stats.notes)
    workers = {w.id: w for w in stats.workers}
    assert workers["w1"].last_seen is None and workers["w1"].pid is None and workers["w1"].started_at is None
    assert any("started_at 9000000000000000 is not a time" in note for note in workers["w1"].notes)
    assert workers["w-inf"].heartbeat_deadline is None and not workers["w-inf"].alive
    last = app.events(count=1)[-1]
    assert isinstance(last, Event) and last.fields["priority"] is None and last.notes
    json.dumps(stats.model_dump(mode="json"))
    r.hset(f"orch:{{default}}:task:{task_id}", mapping={"args": "not json", "priority": "x"})
    info = app.task_info(task_id)
    assert info.args is None and info.priority is None and info.notes
    assert [t.id for t in app.queue("default").tasks("pending").tasks] == [task_id]


# ------------------------------------------------------------------ errors with fields


def test_producer_errors_name_the_field(app: Orchestrator, r: redis.Redis) -> None:
    cases = [
        ({"priority": 11}, "priority"),
        ({"queue": "no/slash"}, "queue"),
        ({"key": ""}, "key"),
        ({"max_retries": -1}, "max_retries"),
        ({"delay": float("nan")}, "delay"),
        ({"timeout": 0}, "timeout"),
    ]
    for options, field in cases:
        with pytest.raises(ValidationError) as info:
            app.enqueue("m:f", **options)
        assert info.value.field == field, options
        assert info.value.to_dict()["field"] == field
    with pytest.raises(ValidationError) as bad_args:
        app.enqueue("m:f", [object()])
    assert bad_args.value.field == "args"
    with pytest.raises(ValidationError) as bad_name:
        app.enqueue("has space")
    assert bad_name.value.field == "name"
    assert r.keys("orch:{*}:task:*") == []  # nothing was written


def test_handle_errors_carry_the_task(app: Orchestrator) -> None:
    handle = app.enqueue("m:f", queue="q")
    with pytest.raises(ResultTimeout) as late:
        handle.result(timeout=0)
    assert (late.value.task_id, late.value.queue) == (handle.id, "q")
    app.cancel(handle.id)
    with pytest.raises(TaskCancelled) as cancelled:
        handle.result(timeout=5)
    assert (cancelled.value.task_id, cancelled.value.queue, cancelled.value.state) == (handle.id, "q", "CANCELLED")
    failing = app.enqueue("m:f", queue="q", max_retries=0)
    (lease,) = claim(app, queue="q")
    assert lease.task_id == failing.id
    fail(app, lease)
    with pytest.raises(TaskFailed) as failed:
        failing.result(timeout=5)
    assert (failed.value.queue, failed.value.state, failed.value.error["type"]) == ("q", "FAILED", "ValueError")


def test_a_tasks_own_events(app: Orchestrator) -> None:
    other = app.enqueue("m:f").id
    task_id = app.enqueue("m:f", max_retries=0).id
    leases = claim(app, 2)
    fail(app, next(lease for lease in leases if lease.task_id == task_id), mode="retry")
    events = app.queue("default").task_events(task_id)
    assert [e.event for e in events] == ["enqueued", "claimed", "failed"]
    assert {e.task_id for e in events} == {task_id} and other != task_id
    assert app.queue("default").task_events("ghost") == []


def test_a_key_of_the_wrong_type_is_a_note_and_other_queues_go_on(app: Orchestrator, r: redis.Redis) -> None:
    app.enqueue("m:f", queue="broken")
    app.enqueue("m:f", queue="fine")
    beat(app, "w1", queue="broken")
    r.delete("orch:{broken}:stats", "orch:{broken}:failed", "orch:{broken}:worker:w1")
    r.set("orch:{broken}:stats", "x")
    r.set("orch:{broken}:failed", "x")
    r.rpush("orch:{broken}:worker:w1", "x")
    broken, fine = app.stats()
    assert broken.counts["failed"] == 0 and broken.counts["pending"] == 1 and broken.totals["enqueued"] == 0
    assert any("orch:{broken}:stats" in note for note in broken.notes)
    assert any("orch:{broken}:failed" in note for note in broken.notes)
    assert broken.workers[0].id == "w1" and broken.workers[0].notes
    assert fine.counts["pending"] == 1 and fine.notes == []


def test_a_handle_on_a_record_with_a_bad_state_says_so(app: Orchestrator, r: redis.Redis) -> None:
    handle = app.enqueue("m:f")
    r.hset(f"orch:{{default}}:task:{handle.id}", "state", b"\xffDONE\n")
    with pytest.raises(MalformedRecord) as info:
        handle.status()
    assert (info.value.task_id, info.value.queue) == (handle.id, "default") and "\n" not in str(info.value)


def _until(stream: Iterator[list[Event]], found: Callable[[Event], bool], timeout: float = 10.0) -> Event:
    deadline = time.monotonic() + timeout
    for batch in stream:
        for event in batch:
            if found(event):
                return event
        assert time.monotonic() < deadline, "the event did not come"
    raise AssertionError("the stream ended")


def test_follow_waits_for_events_and_picks_up_new_queues(app: Orchestrator) -> None:
    stream = app.follow(block_ms=50)
    assert next(stream) == []  # no queue yet: it waits, then says nothing
    first = app.enqueue("m:f", queue="a").id
    assert _until(stream, lambda e: e.task_id == first).queue == "a"
    second = app.enqueue("m:f", queue="b").id  # a queue that appears while following
    assert _until(stream, lambda e: e.task_id == second).event == "enqueued"
    chosen = app.follow(["a"], after=app.events(["a"]), block_ms=50)
    third = app.enqueue("m:f", queue="a").id
    app.enqueue("m:f", queue="b")
    assert _until(chosen, lambda e: e.event == "enqueued").task_id == third  # nothing shown twice, no b
