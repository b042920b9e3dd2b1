"""Routes of queues: the list, one queue's stats, its per-minute series and 15-minute roll-ups, and the bulk
actions (retry-failed, purge, pause, resume).

Owns translating these requests into operator API calls (``Orchestrator.overview``,
``Queue``) and their results into replies. Does not read Redis itself.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query

from ...metrics_records import MAX_ROLLUP_HOURS, MAX_SERIES_MINUTES, QueueOverview
from ...records import QueueStats
from ..deps import App, QueueName
from ..problems import COMMON, documented
from ..schemas import Counted, Paused, PurgeBody, QueueList, QueueSummary, RetryFailedBody, Rollups, Series


def summary(queue: QueueOverview) -> QueueSummary:
    return QueueSummary(
        queue=queue.queue, counts=queue.counts, workers=queue.workers, paused=queue.paused, load=queue.load
    )


def router(read_only: bool) -> APIRouter:
    api = APIRouter(tags=["queues"], responses=documented(*COMMON))

    @api.get("/queues", summary="Every known queue: tasks per state, live workers, paused or not")
    def list_queues(app: App) -> QueueList:
        return QueueList(queues=[summary(queue) for queue in app.overview()])

    @api.get("/queues/{queue}", summary="One queue: tasks per state, counters, workers, paused or not",
             responses=documented(404))
    def get_queue(app: App, queue: QueueName) -> QueueStats:
        return app.queue(queue, must_exist=True).stats()

    @api.get("/queues/{queue}/series", summary="Per-minute counts of the last minutes (kept 24 h)",
             responses=documented(404))
    def series(
        app: App,
        queue: QueueName,
        minutes: Annotated[int, Query(ge=1, le=MAX_SERIES_MINUTES, description="How many minutes, the current "
                                      "one last.")] = 60,
    ) -> Series:
        return Series(queue=queue, points=app.queue(queue, must_exist=True).series(minutes))

    @api.get("/queues/{queue}/rollups", summary="15-minute roll-ups of the last hours' complete quarters (kept 7 "
             "days)", responses=documented(404))
    def rollups(
        app: App,
        queue: QueueName,
        hours: Annotated[int, Query(ge=1, le=MAX_ROLLUP_HOURS, description="How many hours back.")] = 24,
    ) -> Rollups:
        return Rollups(queue=queue, points=app.queue(queue, must_exist=True).rollups(hours))

    if read_only:
        return api

    @api.post("/queues/{queue}/retry-failed", summary="Move every failed task back to pending",
              responses=documented(404))
    def retry_failed(app: App, queue: QueueName, body: Annotated[RetryFailedBody | None, Body()] = None) -> Counted:
        dry_run = body is not None and body.dry_run
        count = app.queue(queue, must_exist=True).retry_failed(dry_run=dry_run)
        return Counted(queue=queue, count=count, dry_run=dry_run, state="failed")

    @api.post("/queues/{queue}/purge", summary="Delete a queue's tasks in one state, with their records",
              responses=documented(404))
    def purge(app: App, queue: QueueName, body: PurgeBody) -> Counted:
        count = app.queue(queue, must_exist=True).purge(body.state, dry_run=body.dry_run)
        return Counted(queue=queue, count=count, dry_run=body.dry_run, state=body.state.strip().lower())

    @api.post("/queues/{queue}/pause", summary="Stop workers claiming from the queue (running tasks finish)",
              responses=documented(404))
    def pause(app: App, queue: QueueName) -> Paused:
        changed = app.queue(queue, must_exist=True).pause()
        return Paused(queue=queue, paused=True, changed=changed)

    @api.post("/queues/{queue}/resume", summary="Let workers claim from the queue again", responses=documented(404))
    def resume(app: App, queue: QueueName) -> Paused:
        changed = app.queue(queue, must_exist=True).resume()
        return Paused(queue=queue, paused=False, changed=changed)

    return api
