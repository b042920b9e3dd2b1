"""The producer API: ``Orchestrator`` and ``@app.task``, sync and async.

Owns validating and encoding what users enqueue (so bad input fails here, before any
key is built or anything is written) and thin I/O around ``transitions``. Does not run
tasks (``worker``) or move them on time (``scheduler``).
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ParamSpec, TypeVar, overload

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from typing_extensions import Unpack  # typing.Unpack (PEP 692) is Python 3.12+

from .config import PREFIX_ENV, Settings, redis_url_from_env
from .connection import async_client, sync_client
from .encoding import (
    DEFAULT_QUEUE,
    DEFAULT_TIMEOUT,
    EnqueueOptions,
    Errors,
    TaskOptions,
    TaskRequest,
    build_spec,
    check_priority,
    exception_types,
    new_request,
    retry_policy,
    validate_task_name,
)
from .errors import ConfigurationError, NotReplicated, PartiallyEnqueued, ValidationError
from .handle import TaskHandle
from .in_process import InProcess
from .keys import DEFAULT_PREFIX, QueueKeys, queues_key, validate_queue_name, validate_stored_name
from .models import DEFAULT_PRIORITY, RetryPolicy
from .operations import Operations
from .redis_calls import redis_calls
from .schedule_ops import ScheduleOperations
from .schedules import ScheduleSpec
from .script_calls import Call, arun_many, command, run_many
from .shards import ShardLayout, ShardRouter, aread_layouts, declare, read_layouts
from .task_function import TaskFunction
from .transitions import Enqueued, TaskSpec, Transitions

__all__ = ["DEFAULT_QUEUE", "DEFAULT_TIMEOUT", "Orchestrator", "TaskFunction", "TaskOptions", "TaskRequest"]

P = ParamSpec("P")
R = TypeVar("R")
log = logging.getLogger(__name__)

ENQUEUE_CHUNK = 1000  # tasks per enqueue script call: keeps each call short
REREGISTER_S = 1.0  # a producer adds its queues to the known-queues set again this often (piggybacked)
Slot = tuple[str, int]  # (queue, position of the first task): one enqueue script call of enqueue_many
_DEFAULTS = TaskOptions()  # the options of a task name no function was registered for


class Orchestrator(Operations, ScheduleOperations, InProcess):
    """A connection to one deployment: registers task functions and enqueues tasks.

    ``Orchestrator()`` uses ``ORCH_REDIS_URL`` or ``redis://localhost:6379/0``. The
    operator API (``queue(name)``, ``stats()``, ``events()``, ``get_task(id)``, ``cancel``,
    ...) is inherited from ``operations.Operations``; ``run_until_idle()`` and the movable
    ``clock_offset_ms`` (for tests) from ``in_process.InProcess``.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        settings: Settings | None = None,
        clock_offset_ms: int = 0,
    ) -> None:
        if settings is None:
            url = redis_url if redis_url is not None else redis_url_from_env()
            settings = Settings(redis_url=url, prefix=os.environ.get(PREFIX_ENV) or DEFAULT_PREFIX)
        elif redis_url is not None:
            settings = Settings(**{**settings.model_dump(), "redis_url": redis_url})  # checked, unlike model_copy
        self.settings = settings
        self.registry: dict[str, TaskFunction[..., Any]] = {}
        self.declared_schedules: dict[str, ScheduleSpec] = {}  # @app.periodic (schedule_ops)
        self._clock_offset_ms = clock_offset_ms
        self._transitions: dict[str, Transitions] = {}
        self._registered: dict[str, float] = {}  # queue -> when this process last sent its SADD
        self._unregistered: set[str] = set()  # names enqueued without a function here (logged once)
        self._redis: Redis | None = None
        self._aredis: AsyncRedis | None = None
        self._router = ShardRouter()  # the sharded queues' layouts, read again once a second

    # -------------------------------------------------------------- connections

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            self._redis = sync_client(self.settings.redis_url, self.settings.lease_timeout)
        return self._redis

    @property
    def aredis(self) -> AsyncRedis:
        if self._aredis is None:
            self._aredis = async_client(self.settings.redis_url, self.settings.lease_timeout)
        return self._aredis

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()
            self._redis = None

    async def aclose(self) -> None:
        if self._aredis is not None:
            await self._aredis.aclose()
            self._aredis = None

    def keys(self, queue: str) -> QueueKeys:
        return self._scripts(queue).keys

    def _scripts(self, queue: str) -> Transitions:
        """The script-call builder of one queue (validates the name before any key is built).

        Internal: the worker, the scheduler and the operator API send these calls; users
        and the faces (CLI, HTTP) use ``queue()``, the operator API.
        """
        found = self._transitions.get(queue)
        if found is None:
            validate_stored_name(queue)
            keys = QueueKeys(queue, self.settings.prefix)
            found = Transitions(
                keys, events_maxlen=self.settings.events_maxlen, clock_offset_ms=self._clock_offset_ms
            )
            self._transitions[queue] = found
        return found

    @property
    def ttl_ms(self) -> int:
        return round(self.settings.result_ttl * 1000)

    # ------------------------------------------------------------- registration

    @overload
    def task(self, fn: Callable[P, R], /) -> TaskFunction[P, R]: ...

    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        queue: str = DEFAULT_QUEUE,
        priority: int = DEFAULT_PRIORITY,
        timeout: float | None = DEFAULT_TIMEOUT,
        max_retries: int | None = None,
        backoff: float | None = None,
        retry: RetryPolicy | None = None,
        dont_retry: type[BaseException] | Errors = (),
        retry_on: type[BaseException] | Errors = (),
    ) -> Callable[[Callable[P, R]], TaskFunction[P, R]]: ...

    def task(
        self,
        fn: Callable[P, R] | None = None,
        /,
        *,
        name: str | None = None,
        queue: str = DEFAULT_QUEUE,
        priority: int = DEFAULT_PRIORITY,
        timeout: float | None = DEFAULT_TIMEOUT,
        max_retries: int | None = None,
        backoff: float | None = None,
        retry: RetryPolicy | None = None,
        dont_retry: type[BaseException] | Errors = (),
        retry_on: type[BaseException] | Errors = (),
    ) -> TaskFunction[P, R] | Callable[[Callable[P, R]], TaskFunction[P, R]]:
        """Register a function as a task: ``@app.task`` or ``@app.task(queue=..., ...)``.

        Retries: ``max_retries`` (default 3) and ``backoff`` (first delay, seconds), or a
        whole ``retry=RetryPolicy(...)``, not both. ``dont_retry``: exceptions that fail the
        task at once; ``retry_on``: only these are retried. ``timeout=None``: no timeout.
        """
        if name is not None:
            try:
                validate_task_name(name)
            except ValidationError as exc:
                raise ConfigurationError(str(exc)) from None
        validate_queue_name(queue)
        check_priority(priority)
        options = TaskOptions(
            queue=queue,
            priority=priority,
            timeout=timeout,
            retry=retry_policy(max_retries, backoff, retry),
            dont_retry=exception_types(dont_retry, "dont_retry"),
            retry_on=exception_types(retry_on, "retry_on"),
        )
        try:
            options.timings_ms  # noqa: B018  # converted (and so checked) now, not at every enqueue
        except ValidationError as exc:
            raise ConfigurationError(str(exc)) from None

        def register(func: Callable[P, R]) -> TaskFunction[P, R]:
            task_name = name or f"{func.__module__}:{func.__qualname__}"
            try:
                validate_task_name(task_name)
            except ValidationError as exc:
                raise ConfigurationError(f"{exc}; give the task a name= that is") from None
            wrapped = TaskFunction(self, func, task_name, options)
            self.registry[task_name] = wrapped
            return wrapped

        return register(fn) if fn is not None else register

    # ---------------------------------------------------------------- enqueue

    def request(
        self,
        name: str,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Unpack[EnqueueOptions],
    ) -> TaskRequest:
        """A TaskRequest for ``enqueue_many`` (checked when it is enqueued)."""
        return new_request(name, args, kwargs, options)

    def enqueue(
        self,
        name: str,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Unpack[EnqueueOptions],
    ) -> TaskHandle[Any]:
        """Enqueue a task by name (``"pkg.mod:fn"``); the function need not be importable here.

        Options: queue, priority (0-9, lower first), delay (seconds), key (while a task
        enqueued with it exists, enqueueing it again returns that task), unique_key (the same
        while that task is unfinished), max_retries, timeout (seconds; None keeps the task's).
        A name registered here has its arguments checked against the function's signature.
        """
        request = new_request(name, args, kwargs, options)
        now = time.monotonic()
        if self._router.stale(now):
            self._read_shards(now)
        queue, call = self._single(request)
        calls = [call]
        if request.delay or now - self._registered.get(queue, -REREGISTER_S) >= REREGISTER_S:
            calls += self._registering({queue}, bool(request.delay), now)
        with redis_calls():
            results = run_many(self.redis, calls, self.settings.replication)  # one round trip
        [reply] = _first(results, queue)
        return TaskHandle(self, reply.id, queue, created=reply.created)

    async def aenqueue(
        self,
        name: str,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Unpack[EnqueueOptions],
    ) -> TaskHandle[Any]:
        request = new_request(name, args, kwargs, options)
        await self._aread_shards()
        queue, call = self._single(request)
        registering = self._registering({queue}, bool(request.delay))
        with redis_calls():
            results = await arun_many(self.aredis, [call, *registering], self.settings.replication)
        [reply] = _first(results, queue)
        return TaskHandle(self, reply.id, queue, created=reply.created)

    def _single(self, request: TaskRequest) -> tuple[str, Call[list[Enqueued]]]:
        queue, spec = self._spec(request)
        queue = self._router.route(queue, spec.key, spec.unique_key)
        return queue, self._scripts(queue).enqueue([spec], max_payload=self.settings.max_payload_bytes)

    def enqueue_many(self, requests: Iterable[TaskRequest]) -> list[TaskHandle[Any]]:
        """Enqueue many tasks with one script call per queue and per 1,000 tasks, sent together.

        Every request is validated before anything is sent. Each call is atomic; if one
        fails (Redis out of memory, say) its error is raised when no other call landed,
        else PartiallyEnqueued, whose ``handles`` are the tasks that were enqueued.
        """
        requests = list(requests)
        self._read_shards()
        plan, order = self._plan(requests)  # validates every request before any I/O
        registering = self._registering({queue for queue, _ in plan}, any(r.delay for r in requests))
        with redis_calls():
            results = run_many(self.redis, [*plan.values(), *registering], self.settings.replication)  # one write
            return self._collect(plan, order, results[: len(plan)])

    async def aenqueue_many(self, requests: Iterable[TaskRequest]) -> list[TaskHandle[Any]]:
        requests = list(requests)
        await self._aread_shards()
        plan, order = self._plan(requests)  # validates every request before any I/O
        registering = self._registering({queue for queue, _ in plan}, any(r.delay for r in requests))
        with redis_calls():
            results = await arun_many(self.aredis, [*plan.values(), *registering], self.settings.replication)
            return self._collect(plan, order, results[: len(plan)])

    def declare_queue(self, queue: str, *, shards: int = 1) -> ShardLayout:
        """Spread ``queue`` over ``shards`` physical queues, each under its own hash tag (on a
        Redis Cluster, on as many masters as there are); ``shards=1``: a plain queue again.

        Stored in Redis (``<prefix>:shards``), so every producer and worker sees it. The same
        K again changes nothing; another K while tasks of the queue wait raises
        ShardingRefused (its ``waiting``, ``current`` and ``shards`` fields say why)."""
        with redis_calls():
            layout = declare(self.redis, queue, shards, self.settings.prefix)
            self.redis.sadd(queues_key(self.settings.prefix), *layout.queues)  # listed before a first enqueue
        self._router.read_at = None  # this process sees the new layout at once
        return layout

    async def adeclare_queue(self, queue: str, *, shards: int = 1) -> ShardLayout:
        """``declare_queue`` for asyncio programs, run on a thread with the sync client:
        declaring is rare, and its steps (the layouts read, the waiting tasks counted, a
        master chosen for each shard) are written once (``shards.declare``)."""
        return await asyncio.to_thread(self.declare_queue, queue, shards=shards)

    def shard_layouts(self) -> dict[str, tuple[str, ...]]:
        """Every sharded queue and its physical queues (shard 0 first), as stored."""
        with redis_calls():
            return read_layouts(self.redis, self.settings.prefix)

    async def ashard_layouts(self) -> dict[str, tuple[str, ...]]:
        """``shard_layouts`` for asyncio programs."""
        with redis_calls():
            return await aread_layouts(self.aredis, self.settings.prefix)

    def _read_shards(self, now: float | None = None) -> None:
        """The shard layouts, read again before an enqueue when over a second old (one HGETALL)."""
        now = time.monotonic() if now is None else now
        if self._router.stale(now):
            with redis_calls():
                self._router.update(read_layouts(self.redis, self.settings.prefix), now)

    async def _aread_shards(self) -> None:
        now = time.monotonic()
        if self._router.stale(now):
            with redis_calls():
                self._router.update(await aread_layouts(self.aredis, self.settings.prefix), now)

    def _registering(self, queues: set[str], delayed: bool, now: float | None = None) -> list[Call[Any]]:
        """The SADD of these queues to the known-queues set (outside any hash tag), to send in
        the same round trip as an enqueue, after it. Always with a delayed task (only a
        scheduler that knows the queue promotes it, and the set may have been deleted since);
        else when this process last sent it over REREGISTER_S ago: a deleted set is filled
        again within that time, and the hot path of ready tasks pays nothing in between. Its
        own failure (the set spoiled by hand) does not fail the enqueue."""
        now = time.monotonic() if now is None else now
        since = REREGISTER_S if not delayed else 0.0
        stale = [q for q in queues if now - self._registered.get(q, -REREGISTER_S) >= since]
        if not stale:
            return []
        self._registered.update(dict.fromkeys(stale, now))
        return [command("SADD", queues_key(self.settings.prefix), *sorted(stale))]

    def _plan(
        self, requests: list[TaskRequest]
    ) -> tuple[dict[Slot, Call[list[Enqueued]]], list[tuple[str, int]]]:
        """Validate every request, then group them into script calls: one per queue and chunk.

        Returns the calls keyed by (queue, first position) and each request's (queue, position).
        """
        by_queue: dict[str, list[TaskSpec]] = defaultdict(list)
        order: list[tuple[str, int]] = []
        for request in requests:
            queue, spec = self._spec(request)
            queue = self._router.route(queue, spec.key, spec.unique_key)
            order.append((queue, len(by_queue[queue])))
            by_queue[queue].append(spec)
        plan: dict[Slot, Call[list[Enqueued]]] = {}
        for queue, specs in by_queue.items():
            transitions = self._scripts(queue)
            for start in range(0, len(specs), ENQUEUE_CHUNK):
                chunk = specs[start : start + ENQUEUE_CHUNK]
                plan[(queue, start)] = transitions.enqueue(chunk, max_payload=self.settings.max_payload_bytes)
        return plan, order

    def _collect(
        self, plan: dict[Slot, Call[list[Enqueued]]], order: list[Slot], results: list[Any]
    ) -> list[TaskHandle[Any]]:
        """Each request's handle. When a call failed: its error if nothing landed, else
        PartiallyEnqueued with the handles of the tasks that did (all calls went in one write).
        Written but not confirmed by the replicas (durability replicated): NotReplicated, whose
        ``reply`` is every handle."""
        short = [r for r in results if isinstance(r, NotReplicated)]
        results = [r.reply if isinstance(r, NotReplicated) else r for r in results]
        replies = {slot: r for slot, r in zip(plan, results, strict=True) if not isinstance(r, BaseException)}
        errors = [r for r in results if isinstance(r, BaseException)]
        if short and not errors:
            handles = self._handles(order, replies)
            raise NotReplicated(
                f"{len(handles)} tasks {short[0]}; enqueue them again with the same keys",
                acked=short[0].acked, wanted=short[0].wanted, reply=handles,
            )
        if not errors:
            return self._handles(order, replies)
        if not replies:
            raise errors[0]
        landed = self._handles(order, replies)
        raise PartiallyEnqueued(
            f"{len(landed)} of {len(order)} tasks were enqueued (their handles are in .handles); "
            f"the rest were not: {errors[0]}",
            landed,
        ) from errors[0]

    def _handles(self, order: list[Slot], replies: dict[Slot, list[Enqueued]]) -> list[TaskHandle[Any]]:
        """The handles of the requests whose call has a reply, in request order."""
        handles: list[TaskHandle[Any]] = []
        append = handles.append
        for queue, position in order:
            start = position - position % ENQUEUE_CHUNK
            chunk = replies.get((queue, start))
            if chunk is not None:
                reply = chunk[position - start]
                append(TaskHandle(self, reply.id, queue, created=reply.created))
        return handles

    def _spec(self, request: TaskRequest) -> tuple[str, TaskSpec]:
        """Validate and encode one request; raises before anything is written."""
        registered = self.registry.get(request.name)
        if registered is None:
            self._check_unregistered(request.name)
            return build_spec(request, _DEFAULTS, self.settings.max_payload_bytes)
        registered.arguments.check(request.name, request.args, request.kwargs)
        return build_spec(request, registered.options, self.settings.max_payload_bytes)

    def _check_unregistered(self, name: str) -> None:
        """A name with no function here: checked, and logged once at DEBUG (enqueue by name from
        another service is a feature, so its arguments cannot be checked here)."""
        if name not in self._unregistered:
            validate_task_name(name)
            if len(self._unregistered) < 10_000:  # a bound, should a caller invent names
                self._unregistered.add(name)
            log.debug("Enqueueing %s: no function registered under that name here; arguments not checked", name)

    # ----------------------------------------------------------------- lookup
    # (get_task, find_task, cancel and the rest of the operator API: ``operations.Operations``)

    def handle(self, task_id: str, queue: str | None = None) -> TaskHandle[Any]:
        """A handle on an existing task; without ``queue``, the known queues are searched. A
        UUID's 32-hex or dashed form gives the handle of its task's 22-character id (ids.forms)."""
        where = self.queue(queue) if queue is not None else self.find_queue(task_id)
        return TaskHandle(self, where.stored_id(task_id), where.name)


def _first(results: list[Any], queue: str) -> Any:
    """The enqueue's reply (its error raised); a registering SADD's reply after it is ignored.
    Not confirmed by the replicas: NotReplicated naming the task (``reply``: its handle's reply)."""
    first = results[0]
    if isinstance(first, NotReplicated):
        [reply] = first.reply
        raise NotReplicated(
            f"task {reply.id} was {first.message}; enqueue it again with the same key",
            acked=first.acked, wanted=first.wanted, reply=first.reply, task_id=reply.id, queue=queue,
        ) from None
    if isinstance(first, BaseException):
        raise first
    return first
