"""The operator API's entry points on ``Orchestrator``: queues, lookups by id, reads across queues.

Owns what an operator asks the deployment as a whole: the known queues, ``queue(name)``
(a ``Queue``, for everything about one queue), the overview of every queue (``overview``),
stats, workers and events of several
queues at once, finding a task by id without knowing its queue, and retrying or
cancelling, running now or deleting it there. ``Orchestrator`` inherits these methods (``Operations`` is a
mixin: it uses the app's connection, settings and key builder). Does not enqueue or
decode records itself (``client``, ``records``).
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .connection import block_limit, wake_groups
from .errors import InvalidTransition, NotReplicated, QueueNotFound, TaskNotFound
from .event_stream import after as read_after
from .ids import forms
from .keys import logical_queue
from .known_queues import aknown_queues, known_queues
from .metrics_records import QueueOverview, SeriesPoint
from .models import Task, TaskState
from .overview import read_activity, read_overview
from .queues import Queue, not_replicated, refused, translated
from .reading import redis_time_ms
from .records import Event, QueueStats, Raw, TaskInfo, WorkerInfo, decode_event, merge_workers
from .redis_calls import redis_calls
from .script_calls import arun
from .shard_views import group_by_queue, merge_stats
from .shards import aread_layouts, read_layouts

if TYPE_CHECKING:
    from redis import Redis
    from redis.asyncio import Redis as AsyncRedis

    from .config import Settings
    from .keys import QueueKeys
    from .task_function import TaskFunction
    from .transitions import Transitions

FOLLOW_POLL_S = 0.05  # events on several cluster slots are polled this often while following


class Operations:
    """Mixin of ``Orchestrator``: the operator methods that are not about one queue."""

    if TYPE_CHECKING:  # what it uses of Orchestrator
        settings: Settings
        registry: dict[str, TaskFunction[..., Any]]  # read by worker.registry, which knows an app by this base

        @property
        def redis(self) -> Redis: ...

        @property
        def aredis(self) -> AsyncRedis: ...

        @property
        def ttl_ms(self) -> int: ...

        def keys(self, queue: str) -> QueueKeys: ...

        def _scripts(self, queue: str) -> Transitions: ...

    def queue(self, name: str, *, must_exist: bool = False) -> Queue:
        """The operator API of one queue (InvalidQueueName at once for a bad name); with
        ``must_exist``, QueueNotFound for a queue that was never used (a typo, say)."""
        queue = Queue(self, name)
        if must_exist and not queue.exists():
            known = ", ".join(self.queues()) or "none yet"
            raise QueueNotFound(f"no queue {name!r} (known: {known})", queue=name)
        return queue

    @translated
    def queues(self) -> list[str]:
        """The known queues (every queue a task was enqueued to), sorted; invalid names are skipped
        (``orch doctor`` names them), a spoiled set reads as none."""
        return known_queues(self.redis, self.settings.prefix).names

    def _resolve(self, queues: Iterable[str] | None) -> list[Queue]:
        """The queues named (each must exist, else QueueNotFound), or every known queue; a
        sharded queue named stands for its shards (physical queues, ``hot#0``, ...)."""
        if queues is None:
            return [self.queue(name) for name in self.queues()]
        layouts = read_layouts(self.redis, self.settings.prefix)
        return [
            self.queue(shard) if name in layouts else self.queue(name, must_exist=True)
            for name in queues
            for shard in layouts.get(name, (name,))
        ]

    @translated
    def stats(self, queues: Iterable[str] | None = None) -> list[QueueStats]:
        """Stats of the queues named (QueueNotFound for one never used), or of every known queue;
        a sharded queue's shards summed into one (its notes say how many)."""
        chosen = self._resolve(queues)
        layouts = read_layouts(self.redis, self.settings.prefix)
        current = {shard for shards in layouts.values() for shard in shards}
        # a sharded queue once (Queue.stats sums its shards and its plain keys), then what no layout names
        names = dict.fromkeys(logical_queue(q.name) if logical_queue(q.name) in layouts else q.name for q in chosen)
        stats = [self.queue(name).stats() for name in names if name not in current]
        return group_by_queue(stats, lambda s: s.queue, merge_stats)

    @translated
    def activity(self, minutes: int = 60, queues: Iterable[str] | None = None) -> list[SeriesPoint]:
        """The queues' per-minute series summed (every known queue by default; names given are
        read as they are), oldest first: what the dashboard charts. Two round trips."""
        return read_activity(self, list(self.queues() if queues is None else queues), minutes)

    @translated
    def overview(self) -> list[QueueOverview]:
        """Every known queue at a glance (counts per state, paused, live workers, load), in
        three round trips whatever the number of queues: O(queues + workers), never O(tasks)."""
        return read_overview(self)

    @translated
    def workers(self, queues: Iterable[str] | None = None) -> list[WorkerInfo]:
        """Every worker registered on the queues, once each, with the queues it serves."""
        return merge_workers([w for queue in self._resolve(queues) for w in queue.workers()])

    @translated
    def events(self, queues: Iterable[str] | None = None, count: int = 20) -> list[Event]:
        """The latest ``count`` events over the queues (every known queue by default), oldest first."""
        merged = [e for queue in self._resolve(queues) for e in queue.events(count)]
        merged.sort(key=Event.sort_key)
        return merged[-count:] if count > 0 else []

    @translated
    def last_event_ids(self, queues: Iterable[str] | None = None) -> dict[str, str]:
        """Each queue's newest event id, to follow from with ``next_events``."""
        return {queue.name: queue.last_event_id() for queue in self._resolve(queues)}

    @translated
    def next_events(self, after: Mapping[str, str], block_ms: int = 0) -> list[Event]:
        """Events newer than ``after`` (queue -> last id seen), waiting up to ``block_ms`` for the first."""
        if not after:
            return []
        queue_of = {self.keys(queue).events: queue for queue in after}
        block_ms = min(block_ms, round(block_limit(self.settings.lease_timeout) * 1000))  # below the socket's
        groups = wake_groups(self.redis, list(queue_of))  # one XREAD may not cross a cluster's slots
        deadline = time.monotonic() + block_ms / 1000
        while True:
            entries: list[tuple[str, str, Raw]] = []
            for group in groups:
                streams = {stream: after[queue_of[stream]] for stream in group}
                wait = block_ms if len(groups) == 1 else None  # streams on several slots: polled
                entries += read_after(self.redis, streams, block_ms=wait)
            found = [decode_event(queue_of[stream], eid, fields) for stream, eid, fields in entries]
            if found or len(groups) == 1 or time.monotonic() >= deadline:
                break
            time.sleep(min(FOLLOW_POLL_S, max(0.0, deadline - time.monotonic())))
        found.sort(key=Event.sort_key)
        return found

    def follow(
        self, queues: Iterable[str] | None = None, *, after: Sequence[Event] = (), block_ms: int = 5000
    ) -> Iterator[list[Event]]:
        """Batches of new events as they come, without end (stop iterating to stop).

        Each wait lasts up to ``block_ms`` (an empty batch then). ``after``: the events
        already shown; following goes on after them. Without ``queues``, a queue that
        appears meanwhile joins, from the moment following began.
        """
        chosen = None if queues is None else [q.name for q in self._resolve(queues)]
        start = f"{translated(redis_time_ms)(self.redis)}-0"
        if after:
            last = dict.fromkeys(chosen or self.queues(), after[-1].id) | {e.queue: e.id for e in after}
        else:
            last = self.last_event_ids(chosen)
        while True:
            if chosen is None:
                for name in self.queues():
                    last.setdefault(name, start)
            if not last:  # nothing to wait on yet
                time.sleep(min(block_ms, 1000) / 1000)
                yield []
                continue
            batch = self.next_events(last, block_ms)
            last.update((event.queue, event.id) for event in batch)
            yield batch

    # ------------------------------------------------------------ tasks by id

    @translated
    def find_queue(self, task_id: str) -> Queue:
        """The known queue holding task ``task_id`` (TaskNotFound when none does); a UUID's
        32-hex or dashed form finds its task too (ids.forms)."""
        names = self.queues()
        pairs = [(name, form) for name in names for form in forms(task_id)]
        pipe = self.redis.pipeline(transaction=False)
        for name, form in pairs:
            pipe.exists(self.keys(name).task(form))
        for (name, _), found in zip(pairs, pipe.execute() if pairs else [], strict=True):
            if found:
                return self.queue(name)
        raise TaskNotFound(f"no task {task_id} in any queue", task_id=task_id)

    def _queue_of(self, task_id: str, queue: str | None) -> Queue:
        """The queue named, else the known queue holding the task; a sharded queue named:
        whichever of its shards holds it."""
        if queue is not None and queue not in read_layouts(self.redis, self.settings.prefix):
            return self.queue(queue)
        return self.find_queue(task_id)

    async def _aqueue_of(self, task_id: str, queue: str | None) -> str:
        if queue is not None and queue not in await aread_layouts(self.aredis, self.settings.prefix):
            return queue
        return await self._afind(task_id)

    @translated
    def task_info(self, task_id: str, queue: str | None = None) -> TaskInfo:
        """A task's record for an operator (times as datetimes, malformed fields noted), in any queue."""
        return self._queue_of(task_id, queue).task(task_id)

    @translated
    def get_task(self, task_id: str, queue: str | None = None) -> Task:
        """A task's typed record; without ``queue``, found in whichever known queue holds it."""
        where = self._queue_of(task_id, queue)
        task_id = where.stored_id(task_id)
        record = self.redis.hgetall(where.keys.task(task_id))
        if not record:
            raise TaskNotFound(f"no task {task_id} in queue {where.name!r}", task_id=task_id, queue=where.name)
        return Task.from_redis(record, task_id, where.name)

    async def aget_task(self, task_id: str, queue: str | None = None) -> Task:
        with redis_calls():
            name = await self._aqueue_of(task_id, queue)
            task_id = await self._astored_id(name, task_id)
            record = await self.aredis.hgetall(self.keys(name).task(task_id))
        if not record:
            raise TaskNotFound(f"no task {task_id} in queue {name!r}", task_id=task_id, queue=name)
        return Task.from_redis(record, task_id, name)

    def find_task(self, task_id: str) -> Task:
        """A task's typed record in whichever known queue holds it."""
        return self.get_task(task_id)

    @translated
    def retry(self, task_id: str, queue: str | None = None) -> None:
        """Move a FAILED task back to PENDING (attempts reset), in any queue."""
        self._queue_of(task_id, queue).retry(task_id)

    @translated
    def cancel(self, task_id: str, queue: str | None = None) -> TaskState:
        """Cancel a task: CANCELLED at once unless RUNNING, where its worker stops it."""
        return self._queue_of(task_id, queue).cancel(task_id)

    @translated
    def run_now(self, task_id: str, queue: str | None = None) -> TaskState:
        """Move a SCHEDULED or RETRYING task to PENDING at once, in any queue; the state it left."""
        return self._queue_of(task_id, queue).run_now(task_id)

    @translated
    def delete(self, task_id: str, queue: str | None = None) -> TaskState | None:
        """Delete a task that is not RUNNING (with its idempotency entries), in any queue."""
        return self._queue_of(task_id, queue).delete(task_id)

    async def acancel(self, task_id: str, queue: str | None = None) -> TaskState:
        with redis_calls():
            name = await self._aqueue_of(task_id, queue)
            task_id = await self._astored_id(name, task_id)
        try:
            with redis_calls():
                call = self._scripts(name).cancel(task_id, self.ttl_ms)
                return await arun(self.aredis, call, self.settings.replication)
        except (TaskNotFound, InvalidTransition) as exc:
            raise refused(exc, "cancel", task_id, name) from None
        except NotReplicated as exc:
            raise not_replicated(exc, "cancel", task_id, name) from None

    async def _afind(self, task_id: str) -> str:
        with redis_calls():
            for name in (await aknown_queues(self.aredis, self.settings.prefix)).names:
                for form in forms(task_id):
                    if await self.aredis.exists(self.keys(name).task(form)):
                        return name
        raise TaskNotFound(f"no task {task_id} in any queue", task_id=task_id)

    async def _astored_id(self, queue: str, task_id: str) -> str:
        """Queue.stored_id, async."""
        found = forms(task_id)
        for form in found if len(found) > 1 else ():
            if await self.aredis.exists(self.keys(queue).task(form)):
                return form
        return task_id
