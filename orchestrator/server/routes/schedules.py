"""Routes of periodic schedules: every schedule of the deployment with its next fire time,
and the operator's actions on one (pause, resume, run now).

Owns translating these requests into ``Orchestrator.schedules``, ``pause_schedule``,
``resume_schedule`` and ``run_schedule_now``. Does not read Redis itself. A schedule id may
hold '/' (``{schedule_id:path}``).
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

from fastapi import APIRouter

from ..deps import App
from ..problems import COMMON, documented
from ..schemas import Enqueued, ScheduleEntry, ScheduleList, SchedulePaused


def router(read_only: bool) -> APIRouter:
    api = APIRouter(tags=["schedules"], responses=documented(*COMMON))

    @api.get("/schedules", summary="Every periodic schedule, with its next fire time and tick counts")
    def list_schedules(app: App) -> ScheduleList:
        return ScheduleList(schedules=[ScheduleEntry(**s.as_json()) for s in app.schedules()])

    if read_only:
        return api

    @api.post("/schedules/{schedule_id:path}/pause", summary="Stop a schedule firing until resumed",
              responses=documented(404))
    def pause(app: App, schedule_id: str) -> SchedulePaused:
        return SchedulePaused(schedule=schedule_id, paused=True, changed=app.pause_schedule(schedule_id))

    @api.post("/schedules/{schedule_id:path}/resume", summary="Fire a paused schedule again from its next tick",
              responses=documented(404))
    def resume(app: App, schedule_id: str) -> SchedulePaused:
        return SchedulePaused(schedule=schedule_id, paused=False, changed=app.resume_schedule(schedule_id))

    @api.post("/schedules/{schedule_id:path}/run-now", summary="Enqueue a schedule's task once now (its ticks "
              "untouched)", responses=documented(404))
    def run_now(app: App, schedule_id: str) -> Enqueued:
        handle = app.run_schedule_now(schedule_id)
        return Enqueued(id=handle.id, queue=handle.queue, created=True)

    return api
