"""Route of workers: every worker registered on the queues, once each, live or not.

Owns translating the request into ``Orchestrator.workers``. Does not read Redis itself.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from ..deps import App
from ..problems import COMMON, documented
from ..schemas import WorkerList


def router(read_only: bool) -> APIRouter:
    api = APIRouter(tags=["workers"], responses=documented(*COMMON))

    @api.get("/workers", summary="Every worker registered on the queues (each once, with the queues it serves)",
             responses=documented(404))
    def list_workers(
        app: App,
        queue: Annotated[list[str] | None, Query(description="Only workers of these queues (repeatable).")] = None,
    ) -> WorkerList:
        return WorkerList(workers=app.workers(queue or None))

    return api
