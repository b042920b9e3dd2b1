"""Running the due tasks in this process until none is left: ``app.run_until_idle()``.

Owns ``DrainingWorker``, a ``Worker`` that claims one task at a time and runs it through
the worker's own code (``_execute``: the pools, ``current_task()``, the timeout, the
outcome's verdict, complete or fail under the lease token), with a scheduler pass (promote
due delayed and retrying tasks, fire due periodic schedules, reap expired leases) first
and whenever nothing is pending. It returns what ran and how each attempt ended, read
back from the task's record. Nothing is emulated: every move is the production script.
Does not heartbeat, register itself or listen for cancels (a test's tasks are short and
run one at a time), nor move the clock (``in_process``).
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..config import SchedulerSettings, WorkerSettings
from ..records import decode_task
from ..runs import TaskRun
from ..scheduler import Scheduler
from .worker import Worker

if TYPE_CHECKING:
    from ..client import Orchestrator

WORKER_NAME = "in-process"  # current_task().worker while run_until_idle runs a task


class DrainingWorker(Worker):
    """``await DrainingWorker(app, queues).drain(max_tasks)``: the due tasks of ``queues``, one by one."""

    def __init__(self, app: Orchestrator, queues: Sequence[str]) -> None:
        super().__init__(app, WorkerSettings(queues=tuple((q, 1) for q in queues), concurrency=1, name=WORKER_NAME))
        self.scheduler = Scheduler(app, SchedulerSettings(queues=tuple(queues), rollups=False))

    async def drain(self, max_tasks: int) -> list[TaskRun]:
        """Run due tasks until none is left or ``max_tasks`` ran; what each attempt came to, in order."""
        self._prepare()
        assert self._runner is not None
        ran: list[TaskRun] = []
        try:
            due = True
            while len(ran) < max_tasks:
                if due:  # promote what is due by now (the clock may have moved), fire schedules, reap
                    await self.scheduler.run_pass()
                leases = await self._claim(1)
                if self._claim_failed is not None:
                    failed, self._claim_failed = self._claim_failed, None
                    raise failed
                if not leases:
                    if due:
                        break  # nothing pending right after a pass: idle
                    due = True
                    continue
                due = False
                lease = leases[0]
                self._start(lease)
                running = self._running[(lease.queue, lease.task_id)]
                assert running.task is not None
                await running.task
                record = await self.app.aredis.hgetall(self.app.keys(lease.queue).task(lease.task_id))
                info = decode_task(lease.queue, lease.task_id, record) if record else None
                ran.append(TaskRun.of(lease.task_id, lease.name, lease.queue, lease.attempt, info))
        finally:
            self._runner.close()
        return ran
