"""The producer API: ``Orchestrator`` and ``@app.task``, sync and async.

Owns validating and encoding what users enqueue (so bad input fails here, before any
key is built or anything is written) and thin I/O around ``transitions``. Does not run
tasks (``worker``) or move them on time (``scheduler``).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Generic, NamedTuple, ParamSpec, TypeVar, overload

import pydantic
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import OutOfMemoryError

from .config import PREFIX_ENV, Settings, redis_url_from_env
from .connection import async_client, sync_client
from .errors import (
    ConfigurationError,
    InvalidPriority,
    PartiallyEnqueued,
    PayloadTooLarge,
    TaskNotFound,
    ValidationError,
)
from .handle import TaskHandle
from .keys import DEFAULT_PREFIX, QueueKeys, queues_key, validate_queue_name
from .models import DEFAULT_PRIORITY, MAX_PRIORITY, MIN_PRIORITY, RetryPolicy, Task, TaskState, dumps
from .transitions import Call, Enqueued, TaskSpec, Transitions, arun, arun_many, out_of_memory, run, run_many

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_QUEUE = "default"
DEFAULT_TIMEOUT = 300.0
ENQUEUE_CHUNK = 1000  # tasks per enqueue script call: keeps each call short
MAX_KEY_LENGTH = 256
MAX_NAME_LENGTH = 256
MAX_SECONDS = 10 * 365 * 86400  # timeouts, delays and backoffs: ten years (rejects nan and inf)


@dataclass(frozen=True)
class TaskOptions:
    """Per-task defaults: given to ``@app.task`` and overridable at enqueue."""

    queue: str = DEFAULT_QUEUE
    priority: int = DEFAULT_PRIORITY
    timeout: float | None = DEFAULT_TIMEOUT
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy())

    @cached_property
    def timings_ms(self) -> tuple[int, int, int]:
        """timeout, backoff and backoff_max in milliseconds, converted once per task function."""
        retry = self.retry
        return _ms(self.timeout, "timeout"), _ms(retry.backoff, "backoff"), _ms(retry.backoff_max, "backoff_max")


class TaskRequest(NamedTuple):
    """One task to enqueue, for ``enqueue_many``; unset options take the task's defaults.

    A NamedTuple: immutable, and built once per task (a frozen dataclass costs 5x more).
    """

    name: str
    args: Sequence[Any] = ()
    kwargs: dict[str, Any] | None = None  # None: no keyword arguments
    queue: str | None = None
    priority: int | None = None
    delay: float | None = None
    key: str | None = None
    max_retries: int | None = None
    timeout: float | None = None


def _unknown_options(unknown: dict[str, Any], error: type[Exception] = ValidationError) -> None:
    if unknown:
        names = ", ".join(sorted(unknown))
        raise error(f"unknown option(s): {names}")


def _ms(seconds: float | None, what: str) -> int:
    if seconds is None:
        return 0
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds <= MAX_SECONDS:
        raise ValidationError(f"{what} must be a number of seconds from 0 to {MAX_SECONDS:g}, not {seconds!r}")
    return round(seconds * 1000)


Slot = tuple[str, int]  # (queue, position of the first task): one enqueue script call of enqueue_many
_DEFAULTS = TaskOptions()  # the options of a task name no function was registered for


class Orchestrator:
    """A connection to one deployment: registers task functions and enqueues tasks.

    ``Orchestrator()`` uses ``ORCH_REDIS_URL`` or ``redis://localhost:6379/0``.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        settings: Settings | None = None,
        clock_offset_ms: int = 0,
        **unknown: Any,
    ) -> None:
        _unknown_options(unknown, ConfigurationError)
        if settings is None:
            url = redis_url if redis_url is not None else redis_url_from_env()
            settings = Settings(redis_url=url, prefix=os.environ.get(PREFIX_ENV) or DEFAULT_PREFIX)
        elif redis_url is not None:
            settings = settings.model_copy(update={"redis_url": redis_url})
        self.settings = settings
        self.registry: dict[str, TaskFunction[..., Any]] = {}
        self._clock_offset_ms = clock_offset_ms
        self._transitions: dict[str, Transitions] = {}
        self._registered_queues: set[str] = set()
        self._redis: Redis | None = None
        self._aredis: AsyncRedis | None = None

    # -------------------------------------------------------------- connections

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            self._redis = sync_client(self.settings.redis_url)
        return self._redis

    @property
    def aredis(self) -> AsyncRedis:
        if self._aredis is None:
            self._aredis = async_client(self.settings.redis_url)
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
            validate_queue_name(queue)
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
        max_retries: int = 3,
        timeout: float | None = DEFAULT_TIMEOUT,
        backoff: float | RetryPolicy = 1.0,
        **unknown: Any,
    ) -> Callable[[Callable[P, R]], TaskFunction[P, R]]: ...

    def task(
        self,
        fn: Callable[P, R] | None = None,
        /,
        *,
        name: str | None = None,
        queue: str = DEFAULT_QUEUE,
        priority: int = DEFAULT_PRIORITY,
        max_retries: int = 3,
        timeout: float | None = DEFAULT_TIMEOUT,
        backoff: float | RetryPolicy = 1.0,
        **unknown: Any,
    ) -> TaskFunction[P, R] | Callable[[Callable[P, R]], TaskFunction[P, R]]:
        """Register a function as a task: ``@app.task`` or ``@app.task(queue=..., ...)``.

        ``backoff`` is the first retry's delay in seconds, or a whole RetryPolicy.
        """
        _unknown_options(unknown, ConfigurationError)
        validate_queue_name(queue)
        _check_priority(priority)
        try:  # validated (model_copy would not be), so bad numbers fail here, not at enqueue
            if isinstance(backoff, RetryPolicy):
                retry = RetryPolicy(**{**backoff.model_dump(), "max_retries": max_retries})
            else:
                retry = RetryPolicy(max_retries=max_retries, backoff=backoff)
        except pydantic.ValidationError as exc:
            raise ConfigurationError(f"invalid retry options: {exc}") from None
        options = TaskOptions(queue=queue, priority=priority, timeout=timeout, retry=retry)
        try:
            options.timings_ms  # noqa: B018  # converted (and so checked) now, not at every enqueue
        except ValidationError as exc:
            raise ConfigurationError(str(exc)) from None

        def register(func: Callable[P, R]) -> TaskFunction[P, R]:
            task_name = name or f"{func.__module__}:{func.__qualname__}"
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
        *,
        queue: str | None = None,
        priority: int | None = None,
        delay: float | None = None,
        key: str | None = None,
        max_retries: int | None = None,
        timeout: float | None = None,
        **unknown: Any,
    ) -> TaskRequest:
        """A TaskRequest for ``enqueue_many``, rejecting unknown options at once."""
        _unknown_options(unknown)
        if args is not None and (isinstance(args, str | bytes) or not isinstance(args, list | tuple)):
            raise ValidationError(f"args must be a list or tuple, not {type(args).__name__}")
        if kwargs is not None and not isinstance(kwargs, dict):
            raise ValidationError(f"kwargs must be a dict, not {type(kwargs).__name__}")
        return TaskRequest(  # copies: the caller may change its list or dict afterwards
            name, tuple(args) if args else (), dict(kwargs) if kwargs else None,
            queue, priority, delay, key, max_retries, timeout,
        )

    def enqueue(
        self,
        name: str,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> TaskHandle:
        """Enqueue a task by name (``"pkg.mod:fn"``); the function need not be importable here.

        Options: queue, priority (0-9, lower first), delay (seconds), key (idempotency),
        max_retries, timeout (seconds). Anything else raises ValidationError.
        """
        queue, call = self._single(self.request(name, args, kwargs, **options))
        self._register_queues_sync({queue})
        [reply] = run(self.redis, call)  # one round trip
        return TaskHandle(self, reply.id, queue, created=reply.created)

    async def aenqueue(
        self,
        name: str,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> TaskHandle:
        queue, call = self._single(self.request(name, args, kwargs, **options))
        await self._aregister_queues({queue})
        [reply] = await arun(self.aredis, call)
        return TaskHandle(self, reply.id, queue, created=reply.created)

    def _single(self, request: TaskRequest) -> tuple[str, Call[list[Enqueued]]]:
        queue, spec = self._spec(request)
        return queue, self._scripts(queue).enqueue([spec], max_payload=self.settings.max_payload_bytes)

    def enqueue_many(self, requests: Iterable[TaskRequest]) -> list[TaskHandle]:
        """Enqueue many tasks with one script call per queue and per 1,000 tasks, sent together.

        Every request is validated before anything is sent. Each call is atomic; if one
        fails (Redis out of memory, say) its error is raised when no other call landed,
        else PartiallyEnqueued, whose ``handles`` are the tasks that were enqueued.
        """
        plan, order = self._plan(list(requests))  # validates every request before any I/O
        self._register_queues_sync({queue for queue, _ in plan})
        results = run_many(self.redis, list(plan.values()))  # one write; replies decoded as they come
        return self._collect(plan, order, results)

    async def aenqueue_many(self, requests: Iterable[TaskRequest]) -> list[TaskHandle]:
        plan, order = self._plan(list(requests))  # validates every request before any I/O
        await self._aregister_queues({queue for queue, _ in plan})
        results = await arun_many(self.aredis, list(plan.values()))
        return self._collect(plan, order, results)

    def _register_queues_sync(self, queues: set[str]) -> None:
        """Add queues to the known-queues set, once per process (outside any hash tag)."""
        new = queues - self._registered_queues
        if new:
            try:
                self.redis.sadd(queues_key(self.settings.prefix), *new)
            except OutOfMemoryError as exc:
                raise out_of_memory(exc) from None
            self._registered_queues.update(new)

    async def _aregister_queues(self, queues: set[str]) -> None:
        new = queues - self._registered_queues
        if new:
            try:
                await self.aredis.sadd(queues_key(self.settings.prefix), *new)
            except OutOfMemoryError as exc:
                raise out_of_memory(exc) from None
            self._registered_queues.update(new)

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
    ) -> list[TaskHandle]:
        """Each request's handle. When a call failed: its error if nothing landed, else
        PartiallyEnqueued with the handles of the tasks that did (all calls went in one write)."""
        replies = {slot: r for slot, r in zip(plan, results, strict=True) if not isinstance(r, BaseException)}
        errors = [r for r in results if isinstance(r, BaseException)]
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

    def _handles(self, order: list[Slot], replies: dict[Slot, list[Enqueued]]) -> list[TaskHandle]:
        """The handles of the requests whose call has a reply, in request order."""
        handles: list[TaskHandle] = []
        append = handles.append
        for queue, position in order:
            start = position - position % ENQUEUE_CHUNK
            chunk = replies.get((queue, start))
            if chunk is not None:
                reply = chunk[position - start]
                append(TaskHandle(self, reply.id, queue, created=reply.created))
        return handles

    def _spec(self, request: TaskRequest) -> tuple[str, TaskSpec]:
        """Validate and encode one request; raises before anything is written.

        The task function's own options were validated when it was registered, so only
        what the request overrides is checked here (this runs once per enqueued task).
        """
        name = request.name
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_LENGTH:
            raise ValidationError(f"task name must be a non-empty string of at most {MAX_NAME_LENGTH} characters")
        registered = self.registry.get(name)
        options = registered.options if registered is not None else _DEFAULTS
        queue = options.queue if request.queue is None else validate_queue_name(request.queue)
        priority = options.priority
        if request.priority is not None:
            priority = request.priority
            _check_priority(priority)
        if not isinstance(request.args, list | tuple) or not isinstance(request.kwargs, dict | None):
            raise ValidationError("args must be a list or tuple and kwargs a dict")
        args = dumps(request.args) if request.args else b"[]"
        kwargs = dumps(request.kwargs) if request.kwargs else b"{}"
        size = len(args) + len(kwargs)
        if size > self.settings.max_payload_bytes:
            raise PayloadTooLarge(
                f"arguments are {size} bytes encoded, over the limit of {self.settings.max_payload_bytes}"
            )
        key = request.key
        if key is None:
            key = ""
        elif not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_LENGTH:
            raise ValidationError(f"key must be a non-empty string of at most {MAX_KEY_LENGTH} characters")
        max_retries = request.max_retries
        if max_retries is None:
            max_retries = options.retry.max_retries
        elif isinstance(max_retries, bool) or not isinstance(max_retries, int) or not 0 <= max_retries <= 1000:
            raise ValidationError(f"max_retries must be an integer from 0 to 1000, not {max_retries!r}")
        timeout_ms, backoff_ms, backoff_max_ms = options.timings_ms
        if request.timeout is not None:
            timeout_ms = _ms(request.timeout, "timeout")
        delay_ms = 0 if request.delay is None else _ms(request.delay, "delay")
        spec = TaskSpec(
            os.urandom(16).hex(),  # a random 128-bit id, as uuid4().hex but 4x cheaper
            name,
            priority,
            args,
            kwargs,
            max_retries,
            timeout_ms,
            backoff_ms,
            backoff_max_ms,
            int(options.retry.jitter),
            delay_ms,
            key,
        )
        return queue, spec

    # ----------------------------------------------------------------- lookup

    def get_task(self, task_id: str, queue: str = DEFAULT_QUEUE) -> Task:
        record = self.redis.hgetall(self.keys(queue).task(task_id))
        if not record:
            raise TaskNotFound(f"no task {task_id} in queue {queue!r}")
        return Task.from_redis(record)

    async def aget_task(self, task_id: str, queue: str = DEFAULT_QUEUE) -> Task:
        record = await self.aredis.hgetall(self.keys(queue).task(task_id))
        if not record:
            raise TaskNotFound(f"no task {task_id} in queue {queue!r}")
        return Task.from_redis(record)

    def find_task(self, task_id: str) -> Task:
        """Look a task up in every known queue (for tools that have only its id)."""
        for raw in sorted(self.redis.smembers(queues_key(self.settings.prefix))):
            queue = raw.decode() if isinstance(raw, bytes) else str(raw)
            record = self.redis.hgetall(self.keys(queue).task(task_id))
            if record:
                return Task.from_redis(record)
        raise TaskNotFound(f"no task {task_id} in any queue")

    def cancel(self, task_id: str, queue: str = DEFAULT_QUEUE) -> TaskState:
        """Cancel a task: CANCELLED at once unless RUNNING, where its worker stops it."""
        return run(self.redis, self._scripts(queue).cancel(task_id, self.ttl_ms))

    async def acancel(self, task_id: str, queue: str = DEFAULT_QUEUE) -> TaskState:
        return await arun(self.aredis, self._scripts(queue).cancel(task_id, self.ttl_ms))


def _check_priority(priority: object) -> None:
    if isinstance(priority, bool) or not isinstance(priority, int) or not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise InvalidPriority(
            f"priority must be an integer from {MIN_PRIORITY} (runs first) to {MAX_PRIORITY}, not {priority!r}"
        )


class TaskFunction(Generic[P, R]):
    """A registered task: call it to run it here, ``.delay()`` / ``.enqueue()`` to queue it."""

    def __init__(self, app: Orchestrator, fn: Callable[P, R], name: str, options: TaskOptions) -> None:
        self.app = app
        self.fn = fn
        self.name = name
        self.options = options
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", name)
        self.__wrapped__ = fn

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> TaskHandle:
        """Enqueue with the task's default options."""
        return self.app.enqueue(self.name, args, kwargs)

    async def adelay(self, *args: P.args, **kwargs: P.kwargs) -> TaskHandle:
        return await self.app.aenqueue(self.name, args, kwargs)

    def enqueue(
        self, args: Sequence[Any] | None = None, kwargs: dict[str, Any] | None = None, **options: Any
    ) -> TaskHandle:
        """Enqueue with options: queue, priority, delay, key, max_retries, timeout."""
        return self.app.enqueue(self.name, args, kwargs, **options)

    async def aenqueue(
        self, args: Sequence[Any] | None = None, kwargs: dict[str, Any] | None = None, **options: Any
    ) -> TaskHandle:
        return await self.app.aenqueue(self.name, args, kwargs, **options)

    def request(
        self, args: Sequence[Any] | None = None, kwargs: dict[str, Any] | None = None, **options: Any
    ) -> TaskRequest:
        """A TaskRequest for ``app.enqueue_many``."""
        return self.app.request(self.name, args, kwargs, **options)
