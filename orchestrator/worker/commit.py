"""The worker's commit path: an attempt's outcome sent with its lease token.

Owns ``Running`` (what the worker knows of one task it runs) and the ``Commits`` part of
``Worker``: complete or fail under the lease token, retried with a backoff while Redis is
unavailable or a script refuses (a queue key spoiled by hand, repairable meanwhile) and the
lease may still hold; a lost lease drops the result (after checking that an earlier try
did not land). With durability "replicated" an outcome the replicas did not confirm in time
is logged and counted as recorded (it is, on the primary; a failover before the replicas
catch up runs the task again: at least once). Does not claim, run or heartbeat
(``worker``), nor batch calls (``pipeline``).
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar, cast

from ..complaints import Complaints, describe
from ..errors import LeaseLost, MalformedRecord, NotReplicated, OrchestratorError, TaskNotFound
from ..models import FailMode, TaskState, dumps
from ..reading import RIDE_OUT
from ..sanitize import get_logger, redis_error_text
from ..script_calls import Call
from ..transitions import Lease
from .pipeline import Pipeliner

if TYPE_CHECKING:  # not at run time: Orchestrator.run_until_idle imports the worker
    from ..client import Orchestrator

log = get_logger("orchestrator.worker.worker")  # the worker's own lines, under the name they always had
T = TypeVar("T")
UNAVAILABLE = RIDE_OUT  # ridden out with a backoff (see reading.RIDE_OUT)


@dataclass
class Running:
    lease: Lease
    started: float
    task: asyncio.Task[None] | None = None
    stop_reason: str | None = None  # "cancel" (requested), "lost" (lease), "shutdown"
    committing: bool = False  # the outcome is being sent: too late to interrupt


def delay(failures: int) -> float:
    """Seconds to wait after ``failures`` failures in a row: doubling from 0.1 s to 30 s, jittered."""
    return min(30.0, 0.1 * 2.0 ** min(failures, 10)) * random.uniform(0.5, 1.0)


class Commits:
    """Worker's outcome sending (a part of Worker, which sets these attributes)."""

    app: Orchestrator
    finished: int  # outcomes recorded (succeeded, failed, retrying, cancelled)
    _pipeliner: Pipeliner
    _committing: int  # tasks whose function returned and whose outcome is being sent: their slots are free
    _complaints: Complaints
    _tag: str

    def _free_slot(self) -> None: ...  # Worker's: wakes the claim loop

    async def _backoff(self, what: str, exc: BaseException, failures: int) -> None:
        wait = delay(failures)
        log.warning(
            "%s Redis unavailable during %s (%s); retrying in %.1f s", self._tag, what, redis_error_text(exc), wait
        )
        await asyncio.sleep(wait)

    async def _complete(self, running: Running, payload: bytes) -> None:
        lease = running.lease
        call = self.app._scripts(lease.queue).complete(lease.task_id, lease.token, payload, self.app.ttl_ms)
        if await self._commit(call, running) is not None:
            ms = (time.monotonic() - running.started) * 1000
            log.info("%s Task %s (%s) succeeded in %.0f ms", self._tag, lease.task_id, lease.name, ms)

    async def _fail(self, running: Running, mode: FailMode, record: dict[str, str]) -> None:
        lease = running.lease
        queue = self.app._scripts(lease.queue)
        call = queue.fail(lease.task_id, lease.token, dumps(record), mode=mode, ttl_ms=self.app.ttl_ms)
        reply = await self._commit(call, running)
        if reply is None:
            return
        what = f"{record.get('type')}: {record.get('message')}"
        if reply.state is TaskState.RETRYING:
            log.warning("%s Task %s failed (attempt %d): %s; will retry", self._tag, lease.task_id, lease.attempt, what)
        elif reply.state is TaskState.CANCELLED:
            log.info("%s Task %s cancelled", self._tag, lease.task_id)
        else:
            log.error("%s Task %s FAILED after %d attempts: %s", self._tag, lease.task_id, lease.attempt, what)

    async def _commit(self, call: Call[T], running: Running) -> T | None:
        """Send an outcome, retrying while Redis is unavailable or the script refuses (a queue
        key spoiled by hand, say: repairable meanwhile) and the lease may still hold."""
        if not running.committing:
            running.committing = True
            self._committing += 1  # its slot is free: a claim now joins this outcome's pipeline
            self._free_slot()
        give_up = time.monotonic() + self.app.settings.lease_timeout
        failures = 0
        while True:
            try:
                reply = await self._pipeliner.call(call, durable=True)
                self.finished += 1
                return reply
            except NotReplicated as exc:
                self._complaints.report(
                    "replication", f"task {running.lease.task_id}'s outcome: {exc} (it may run again after a failover)"
                )
                self.finished += 1
                return cast(T, exc.reply)
            except LeaseLost:
                if failures and await self._landed(running):
                    self.finished += 1
                    return None  # an earlier try went through; only its reply was lost
                log.warning(
                    "%s Lease of task %s lost (reaped or given to another worker): result dropped",
                    self._tag, running.lease.task_id,
                )
                return None
            except (MalformedRecord, TaskNotFound) as exc:  # the record was corrupted under the task
                log.error("%s Task %s: outcome not recorded: %s", self._tag, running.lease.task_id, exc)
                return None
            except OrchestratorError as exc:  # CorruptQueue (a key spoiled) or another refusal: nothing written
                failures += 1  # reported once per interval; retried while the lease may hold (repairable)
                # under a subject of its own: a claim that works meanwhile clears only the claims' complaint
                self._complaints.report(f"queue {running.lease.queue} outcomes", describe(exc))
                if time.monotonic() > give_up:
                    log.error("%s Giving up on task %s: its outcome is still refused past its lease; the reaper "
                              "will requeue it", self._tag, running.lease.task_id)
                    return None
                await asyncio.sleep(delay(failures))
            except UNAVAILABLE as exc:
                failures += 1
                if time.monotonic() > give_up:
                    log.error(
                        "%s Giving up on task %s: Redis unavailable past its lease; the reaper will requeue it",
                        self._tag, running.lease.task_id,
                    )
                    return None
                await self._backoff("commit", exc, failures)

    async def _landed(self, running: Running) -> bool:
        """After a retried commit says LEASE_LOST: did the first try land after all?

        Only a complete can be told apart (SUCCESS under our token); a failure under our
        token looks like a reap, so it is reported as lost, which is harmless."""
        lease = running.lease
        key = self.app.keys(lease.queue).task(lease.task_id)
        state, token = await self.app.aredis.hmget(key, ["state", "token"])
        if state == b"SUCCESS" and token == lease.token.encode():
            log.info("%s Task %s: outcome recorded before the connection dropped", self._tag, lease.task_id)
            return True
        return False
