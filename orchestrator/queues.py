"""The operator API of one queue: ``Queue`` (``app.queue(name)``).

Owns everything an operator does to a queue: stats, metrics, per-minute series and
15-minute roll-ups, its workers, listing its tasks by state with a cursor (the walk itself
is ``task_scan``'s), reading one task, its events, pausing and resuming it, retrying,
cancelling, running now, deleting and purging, each returning the typed records of
``records``. The CLI and the HTTP API are faces over it: they neither build keys nor call
scripts. Changes go through ``transitions`` (one script call each, in batches for the bulk
ones); reads are plain commands in a few round trips.
Does not enqueue (``client``) or run tasks (``worker``). Sync only for now.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from redis import Redis
from redis.exceptions import ResponseError

from .errors import InvalidTransition, NotReplicated, OrchestratorError, TaskNotFound, ValidationError
from .event_stream import latest
from .ids import forms
from .keys import SHARD_MARK, queues_key, validate_stored_name
from .metrics_records import (
    MAX_ROLLUP_HOURS,
    MAX_SERIES_MINUTES,
    QueueMetrics,
    RollupPoint,
    SeriesPoint,
    decode_metrics,
    decode_rollup,
    decode_series,
    quarters,
    ready_time,
)
from .metrics_records import minutes as minute_starts
from .models import INDEX_OF, MAX_PRIORITY, MIN_PRIORITY, STATE_NAMES, TaskState
from .reading import redis_time_ms, text
from .records import (
    Event,
    QueueStats,
    TaskInfo,
    TaskPage,
    WorkerInfo,
    decode_event,
    decode_stats,
    decode_task,
    decode_worker,
    parse_state,
)
from .redis_calls import redis_calls
from .sanitize import escape
from .script_calls import run
from .shard_views import merge_metrics, merge_stats
from .shards import read_layouts
from .task_scan import MAX_PAGE as MAX_PAGE  # the page limit, named here too for the faces
from .task_scan import TaskScan

if TYPE_CHECKING:
    from .operations import Operations

P = ParamSpec("P")
T = TypeVar("T")


def translated(fn: Callable[P, T]) -> Callable[P, T]:
    """Run ``fn`` with redis-py's errors turned into OrchestratorErrors (``redis_calls``)."""

    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> T:
        with redis_calls():
            return fn(*args, **kwargs)

    return call


PRIORITY_SPAN = 10_000_000_000_000  # pending score = priority * span + sequence (lua/_lib.lua)
BATCH = 1000  # tasks per retry / purge script call; the bulk methods loop until done
# What purge takes: a state (never running) or done = success and cancelled, and the indexes each empties.
PURGEABLE: dict[str, tuple[str, ...]] = {
    "pending": ("pending",), "scheduled": ("scheduled",), "retrying": ("retrying",), "failed": ("failed",),
    "success": ("done",), "cancelled": ("cancelled",), "done": ("done", "cancelled"),
}
INDEX_OF_NAME = {state.value.lower(): index for state, index in INDEX_OF.items()}  # "success" -> "done"


class Queue:
    """One queue, as an operator sees it. ``app.queue(name)``; the name is checked at once."""

    def __init__(self, app: Operations, name: str) -> None:
        self.app = app
        self.name = validate_stored_name(name)
        self._scripts = app._scripts(name)
        self.keys = self._scripts.keys

    def __repr__(self) -> str:
        return f"Queue({self.name!r})"

    @property
    def _redis(self) -> Redis:
        return self.app.redis

    @translated
    def exists(self) -> bool:
        """Known (a task was enqueued to it), or holding counters, events or workers."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.sismember(queues_key(self.app.settings.prefix), self.name)
        pipe.exists(self.keys.stats, self.keys.events, self.keys.workers)
        member, found = pipe.execute()
        return bool(member) or bool(found) or self._shards() is not None

    def _each(self) -> list[Queue]:
        """This queue, and its shards when it is sharded: what pause, resume, retry and purge act on."""
        return [self, *(Queue(self.app, s) for s in self._shards() or ())]

    def _shards(self) -> tuple[str, ...] | None:
        """This queue's shards when it is sharded (its reads then sum theirs), else None."""
        if SHARD_MARK in self.name:
            return None
        return read_layouts(self._redis, self.app.settings.prefix).get(self.name)

    # -------------------------------------------------------------------- reads

    @translated
    def counts(self) -> dict[str, int]:
        """Tasks per state (the 7 lower-case state names), one ZCARD each, in one round trip.

        Success and cancelled count their index, which keeps each task until its retention ends."""
        pipe = self._redis.pipeline(transaction=False)
        for name in STATE_NAMES:
            pipe.zcard(getattr(self.keys, INDEX_OF_NAME[name]))
        return self._counts(pipe.execute(raise_on_error=False), [])

    def _counts(self, cards: Sequence[Any], notes: list[str]) -> dict[str, int]:
        """ZCARD replies in STATE_NAMES order as counts (an index of the wrong type reads 0, with a note)."""
        return {
            name: int(_or_note(card, getattr(self.keys, INDEX_OF_NAME[name]), 0, notes))
            for name, card in zip(STATE_NAMES, cards, strict=True)
        }

    @translated
    def stats(self) -> QueueStats:
        """Tasks per state, paused or not, counters, average run time and workers, in two round
        trips (a sharded queue: its shards' and its own plain keys', summed)."""
        if (shards := self._shards()) is not None:
            return merge_stats(self.name, [self._stats_here(), *(Queue(self.app, s)._stats_here() for s in shards)])
        return self._stats_here()

    def _stats_here(self) -> QueueStats:
        k = self.keys
        pipe = self._redis.pipeline(transaction=False)
        for name in STATE_NAMES:
            pipe.zcard(getattr(k, INDEX_OF_NAME[name]))
        pipe.exists(k.paused)
        pipe.hgetall(k.stats)
        pipe.zrange(k.workers, 0, -1, withscores=True)
        pipe.execute_command("TIME")  # type: ignore[no-untyped-call]  # a cluster pipeline refuses pipe.time()
        replies = pipe.execute(raise_on_error=False)
        cards, (paused, stats, registered, clock) = replies[: len(STATE_NAMES)], replies[len(STATE_NAMES) :]
        notes: list[str] = []
        counts = self._counts(cards, notes)
        if isinstance(paused, Exception):
            raise paused
        if isinstance(clock, Exception):
            raise clock
        seconds, micros = clock
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        found = self._workers(_or_note(registered, k.workers, [], notes), now_ms)
        stats_hash = _or_note(stats, k.stats, {}, notes)
        return decode_stats(self.name, now_ms, counts, stats_hash, found, notes, paused=bool(paused))

    @translated
    def metrics(self) -> QueueMetrics:
        """Counters and histograms (metrics_records) and the oldest pending task's age, in two
        round trips: O(task-name labels), never O(tasks). Pending is ordered by (priority,
        sequence), so the oldest is among the first task of each priority level. A sharded
        queue: its shards' and its own plain keys', summed."""
        if (shards := self._shards()) is not None:
            parts = [self._metrics_here(), *(Queue(self.app, s)._metrics_here() for s in shards)]
            return merge_metrics(self.name, parts)
        return self._metrics_here()

    def _metrics_here(self) -> QueueMetrics:
        k = self.keys
        pipe = self._redis.pipeline(transaction=False)
        pipe.hgetall(k.metrics)
        for level in range(MIN_PRIORITY, MAX_PRIORITY + 1):
            pipe.zrange(k.pending, level * PRIORITY_SPAN, f"({(level + 1) * PRIORITY_SPAN}", byscore=True,
                        offset=0, num=1)
        pipe.execute_command("TIME")  # type: ignore[no-untyped-call]  # a cluster pipeline refuses pipe.time()
        raw, *firsts, clock = pipe.execute(raise_on_error=False)
        if isinstance(clock, Exception):
            raise clock
        now_ms = int(clock[0]) * 1000 + int(clock[1]) // 1000
        notes: list[str] = []
        fields = _or_note(raw, k.metrics, {}, notes)
        wrong: list[str] = []
        heads = [text(first[0]) for reply in firsts if (first := _or_note(reply, k.pending, [], wrong))]
        notes += wrong[:1]
        oldest = None
        if heads:
            pipe = self._redis.pipeline(transaction=False)
            for task_id in heads:
                pipe.hmget(k.task(task_id), ["created_at", "run_at", "ready_at"])
            times = [ready_time(*r) for r in pipe.execute(raise_on_error=False) if isinstance(r, list)]
            oldest = min((t for t in times if t is not None), default=None)
        return decode_metrics(self.name, now_ms, fields, oldest, notes)

    @translated
    def series(self, minutes: int = 60) -> list[SeriesPoint]:
        """Per-minute enqueued, succeeded, failed, retried, reaped, runs and runtime_ms of the last
        ``minutes`` minutes (the current one last; kept 24 h), oldest first; zeros where idle."""
        if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= MAX_SERIES_MINUTES:
            raise ValidationError(
                f"minutes must be an integer from 1 to {MAX_SERIES_MINUTES}, not {minutes!r}", field="minutes"
            )
        starts = minute_starts(redis_time_ms(self._redis), minutes)
        pipe = self._redis.pipeline(transaction=False)
        for start in starts:
            pipe.hgetall(self.keys.series(start))
        pipe.hgetall(self.keys.stats)
        *snapshots, totals = pipe.execute(raise_on_error=False)
        readable = [r if isinstance(r, dict) else None for r in snapshots]
        return decode_series(starts, readable, totals if isinstance(totals, dict) else {})

    @translated
    def rollups(self, hours: int = 24) -> list[RollupPoint]:
        """The 15-minute roll-ups of the last ``hours`` hours' complete quarters (kept 7 days),
        oldest first, in one round trip; zeros where idle or not rolled up (no scheduler ran)."""
        if isinstance(hours, bool) or not isinstance(hours, int) or not 1 <= hours <= MAX_ROLLUP_HOURS:
            raise ValidationError(
                f"hours must be an integer from 1 to {MAX_ROLLUP_HOURS}, not {hours!r}", field="hours"
            )
        starts = quarters(redis_time_ms(self._redis), hours * 4)
        pipe = self._redis.pipeline(transaction=False)
        for start in starts:
            pipe.hgetall(self.keys.rollup(start))
        replies = pipe.execute(raise_on_error=False)
        return [decode_rollup(s, r if isinstance(r, dict) else None) for s, r in zip(starts, replies, strict=True)]

    @translated
    def workers(self) -> list[WorkerInfo]:
        """The workers registered on this queue, live or not (until the reaper drops them)."""
        registered: Any = self._redis.zrange(self.keys.workers, 0, -1, withscores=True)
        return self._workers(registered, redis_time_ms(self._redis))

    def _workers(self, registered: Sequence[tuple[bytes | str, Any]], now_ms: int) -> list[WorkerInfo]:
        if not registered:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for wid, _ in registered:
            pipe.hgetall(self.keys.worker(text(wid)))
        infos = pipe.execute(raise_on_error=False)
        found = []
        for (wid, score), info in zip(registered, infos, strict=True):
            notes: list[str] = []
            fields = _or_note(info, self.keys.worker(text(wid)), {}, notes)
            worker = decode_worker(self.name, wid, score, fields, now_ms)
            found.append(worker.model_copy(update={"notes": [*notes, *worker.notes]}) if notes else worker)
        return found

    def stored_id(self, task_id: str) -> str:
        """The id task ``task_id`` is stored under here: a UUID's 32-hex or dashed form names
        its 22-character id, or the hex one for a task enqueued before ids were compact
        (ids.forms); any other id, or one found in neither form, is itself (an error names it
        as typed). Costs a call only for a hex form."""
        found = forms(task_id)
        if len(found) == 1:
            return task_id
        exists = self._redis.pipeline(transaction=False)
        for form in found:
            exists.exists(self.keys.task(form))
        return next((form for form, n in zip(found, exists.execute(), strict=True) if n), task_id)

    @translated
    def task(self, task_id: str) -> TaskInfo:
        """One task's record; TaskNotFound when this queue has none by that id."""
        task_id = self.stored_id(task_id)
        record = self._redis.hgetall(self.keys.task(task_id))
        if not record:
            raise TaskNotFound(f"no task {task_id} in queue {self.name!r}", task_id=task_id, queue=self.name)
        return decode_task(self.name, task_id, record)

    @translated
    def tasks(
        self, state: TaskState | str, *, limit: int = 50, cursor: str | None = None, name: str | None = None
    ) -> TaskPage:
        """A page of tasks in ``state`` (a TaskState, its lower-case name, or ``done``), in index order.

        Order: pending in claim order, scheduled/retrying by due time, running by lease
        deadline, failed and done by when they ended. ``name`` keeps only tasks of that
        name; a filtered page may hold fewer than ``limit`` tasks and still have a cursor.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise ValidationError(f"limit must be an integer from 1 to {MAX_PAGE}, not {limit!r}", field="limit")
        indexes, states = parse_state(state)
        label = state.value.lower() if isinstance(state, TaskState) else str(state).strip().lower()
        page = TaskScan(self, [getattr(self.keys, index) for index in indexes], states, name, limit)
        page.run(cursor)
        return TaskPage(queue=self.name, state=label, tasks=page.found, cursor=page.cursor, notes=page.notes)

    @translated
    def events(self, count: int = 20) -> list[Event]:
        """The latest ``count`` events, oldest first."""
        return [decode_event(self.name, eid, fields) for eid, fields in latest(self._redis, self.keys.events, count)]

    @translated
    def task_events(self, task_id: str, *, scan: int = 1000) -> list[Event]:
        """Task ``task_id``'s events among the queue's latest ``scan``, oldest first.

        The stream is capped (``events_maxlen``): on a busy queue a task's early events
        may be gone; ``scan`` bounds the cost of one call.
        """
        entries = latest(self._redis, self.keys.events, max(1, scan))
        wanted = self.stored_id(task_id).encode()
        return [decode_event(self.name, eid, fields) for eid, fields in entries if fields.get(b"task") == wanted]

    @translated
    def last_event_id(self) -> str:
        """The newest event's id, or ``0-0`` when there is none (follow from there)."""
        newest = latest(self._redis, self.keys.events, 1)
        return newest[-1][0] if newest else "0-0"

    # ------------------------------------------------------------------ changes

    @translated
    def pause(self) -> bool:
        """Workers claim nothing from this queue until ``resume`` (enqueue goes on, running
        tasks finish). False when it was paused already. A sharded queue: every shard."""
        return any([run(q._redis, q._scripts.pause(True)) for q in self._each()])

    @translated
    def resume(self) -> bool:
        """Workers claim from this queue again (an idle one is woken). False when it was not paused."""
        return any([run(q._redis, q._scripts.pause(False)) for q in self._each()])

    @translated
    def is_paused(self) -> bool:
        return any(self._redis.exists(q.keys.paused) for q in self._each())

    @translated
    def cancel(self, task_id: str) -> TaskState:
        """CANCELLED at once, or the task's state when it is RUNNING (its worker stops it)."""
        task_id = self.stored_id(task_id)
        try:
            return run(self._redis, self._scripts.cancel(task_id, self.app.ttl_ms), self.app.settings.replication)
        except (TaskNotFound, InvalidTransition) as exc:
            raise refused(exc, "cancel", task_id, self.name) from None
        except NotReplicated as exc:
            raise not_replicated(exc, "cancel", task_id, self.name) from None

    @translated
    def retry(self, task_id: str) -> None:
        """Move one FAILED task back to PENDING, attempts reset."""
        task_id = self.stored_id(task_id)
        try:
            run(self._redis, self._scripts.retry_failed([task_id]))
        except (TaskNotFound, InvalidTransition) as exc:
            raise refused(exc, "retry", task_id, self.name) from None

    @translated
    def run_now(self, task_id: str) -> TaskState:
        """Move a SCHEDULED or RETRYING task to PENDING at once; the state it left."""
        task_id = self.stored_id(task_id)
        try:
            return run(self._redis, self._scripts.run_now(task_id))
        except (TaskNotFound, InvalidTransition) as exc:
            raise refused(exc, "run now", task_id, self.name) from None

    @translated
    def delete(self, task_id: str) -> TaskState | None:
        """Delete a task that is not RUNNING, with its idempotency entries; the state it had
        (None when its malformed record did not say)."""
        task_id = self.stored_id(task_id)
        try:
            return run(self._redis, self._scripts.delete(task_id))
        except (TaskNotFound, InvalidTransition) as exc:
            raise refused(exc, "delete", task_id, self.name) from None

    @translated
    def retry_failed(self, *, dry_run: bool = False) -> int:
        """Move every FAILED task back to PENDING; the count moved (or, with ``dry_run``, to move)."""
        moved = 0
        for q in self._each():
            if dry_run:
                moved += int(self._redis.zcard(q.keys.failed))
                continue
            offset, more = 0, True
            while more:  # paged past malformed records, which stay FAILED where they are
                page = run(self._redis, q._scripts.retry_failed_page(BATCH, offset))
                moved, offset, more = moved + len(page.moved), page.offset, page.more
        return moved

    @translated
    def purge(self, state: str, *, dry_run: bool = False) -> int:
        """Delete the tasks in one state (pending, scheduled, retrying, failed, success, cancelled,
        or done = success and cancelled) with their records.

        Returns the count deleted (or, with ``dry_run``, that would be). Running tasks are never purged.
        """
        name = str(state).strip().lower()
        if name not in PURGEABLE:
            raise ValidationError(
                f"purge takes {', '.join(PURGEABLE)}, not {state!r}", field="state", queue=self.name
            )
        removed = 0
        for q in self._each():
            keys = [getattr(q.keys, index) for index in PURGEABLE[name]]
            if dry_run:
                removed += sum(int(self._redis.zcard(key)) for key in keys)
                continue
            for key in keys:
                while n := run(self._redis, q._scripts.purge(key, BATCH)):
                    removed += n
        return removed


def _or_note(reply: Any, key: str, default: Any, notes: list[str]) -> Any:
    """A pipeline reply, or ``default`` with a note when ``key`` holds the wrong type of value
    (hand-written: ``orch doctor`` names it); any other error is raised."""
    if isinstance(reply, ResponseError) and str(reply).startswith("WRONGTYPE"):
        notes.append(f"{escape(key)} holds the wrong type of value (see orch doctor): read as empty")
        return default
    if isinstance(reply, Exception):
        raise reply
    return reply


def refused(exc: TaskNotFound | InvalidTransition, action: str, task_id: str, queue: str) -> OrchestratorError:
    """A script's refusal to ``action`` one task, worded for a person, with its fields."""
    if isinstance(exc, TaskNotFound):
        return TaskNotFound(f"no task {task_id} in queue {queue!r}", task_id=task_id, queue=queue)
    why = {
        "retry": f"it is {exc.state}, only FAILED tasks can be retried",
        "run now": f"it is {exc.state}, only SCHEDULED and RETRYING tasks can be run now",
        "delete": f"it is {exc.state}: cancel it first",
    }.get(action, f"it is already {exc.state}")
    return InvalidTransition(f"cannot {action} task {task_id}: {why}", task_id=task_id, queue=queue, state=exc.state)


def not_replicated(exc: NotReplicated, action: str, task_id: str, queue: str) -> NotReplicated:
    """``action`` done on the primary but not confirmed by the replicas, naming the task."""
    return NotReplicated(
        f"{action} of task {task_id} {exc.message}", acked=exc.acked, wanted=exc.wanted, reply=exc.reply,
        task_id=task_id, queue=queue,
    )
