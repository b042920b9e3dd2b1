"""Route of periodic schedules: every schedule of the deployment with its next fire time.

Owns translating the request into ``Orchestrator.schedules``. Does not read Redis itself.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

from fastapi import APIRouter

from ..deps import App
from ..problems import COMMON, documented
from ..schemas import ScheduleEntry, ScheduleList


def router(read_only: bool) -> APIRouter:
    api = APIRouter(tags=["schedules"], responses=documented(*COMMON))

    @api.get("/schedules", summary="Every periodic schedule, with its next fire time and tick counts")
    def list_schedules(app: App) -> ScheduleList:
        return ScheduleList(schedules=[ScheduleEntry(**s.as_json()) for s in app.schedules()])

    return api
