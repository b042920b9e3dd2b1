"""What users enqueue, checked and encoded: task options, requests, names, arguments.

Owns the rules a task must pass before anything is written: task names, priorities,
seconds (timeouts, delays, backoffs) turned into milliseconds, arguments checked against
a registered function's signature, strict JSON payloads (``models.dumps``) and their size,
and building the ``TaskSpec`` enqueue sends. Pure: no I/O, no Redis. Does not register
functions or send anything (``client``).
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NamedTuple, TypedDict

from .errors import ConfigurationError, InvalidPriority, PayloadTooLarge, ValidationError
from .ids import new_task_id
from .keys import validate_queue_name
from .models import (
    DEFAULT_PRIORITY,
    DEFAULT_TIMEOUT_MS,
    MAX_PRIORITY,
    MAX_SECONDS,
    MIN_PRIORITY,
    RetryPolicy,
    dumps,
)
from .models import validate_task_name as validate_task_name  # re-exported: defined with the task record
from .transitions import TaskSpec

DEFAULT_QUEUE = "default"
DEFAULT_TIMEOUT = DEFAULT_TIMEOUT_MS / 1000
MAX_KEY_LENGTH = 256
Errors = tuple[type[BaseException], ...]


@dataclass(frozen=True)
class TaskOptions:
    """Per-task defaults: given to ``@app.task`` and overridable at enqueue.

    ``dont_retry``: exceptions that fail the task at once; ``retry_on``: when given, only
    these exceptions are retried (FailNow and a call with arguments that do not fit the
    function's signature never are).
    """

    queue: str = DEFAULT_QUEUE
    priority: int = DEFAULT_PRIORITY
    timeout: float | None = DEFAULT_TIMEOUT
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy())
    dont_retry: Errors = ()
    retry_on: Errors = ()

    @cached_property
    def timings_ms(self) -> tuple[int, int, int]:
        """timeout, backoff and backoff_max in milliseconds, converted once per task function."""
        retry = self.retry
        timeout = 0 if self.timeout is None else timeout_ms(self.timeout)
        return timeout, seconds_ms(retry.backoff, "backoff"), seconds_ms(retry.backoff_max, "backoff_max")

    def retryable(self, exc: BaseException) -> bool:
        """Whether the policy lets ``exc`` be retried (attempts left or not)."""
        if self.dont_retry and isinstance(exc, self.dont_retry):
            return False
        return not self.retry_on or isinstance(exc, self.retry_on)


class EnqueueOptions(TypedDict, total=False):
    """The options every enqueue call takes as keywords (``**options: Unpack[EnqueueOptions]``).

    One list for the six enqueue shortcuts; mypy still rejects a misspelt option, and
    ``new_request`` rejects one at run time. Unset options take the task's defaults.
    The same names, in the same order, as TaskRequest's fields after ``kwargs``.
    """

    queue: str | None
    priority: int | None
    delay: float | None  # seconds
    key: str | None  # while a task enqueued with it exists, enqueueing it again returns that task
    max_retries: int | None
    timeout: float | None  # seconds; None keeps the task's
    unique_key: str | None  # the same as key, while that task is unfinished


OPTION_NAMES = frozenset(EnqueueOptions.__annotations__)


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
    unique_key: str | None = None


# ------------------------------------------------------------------ single values


def check_priority(priority: object) -> None:
    if isinstance(priority, bool) or not isinstance(priority, int) or not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise InvalidPriority(
            f"priority must be an integer from {MIN_PRIORITY} (runs first) to {MAX_PRIORITY}, not {priority!r}",
            field="priority",
        )


def seconds_ms(seconds: float | None, what: str) -> int:
    """Seconds (0 to ten years; None is 0) as whole milliseconds."""
    if seconds is None:
        return 0
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds <= MAX_SECONDS:
        raise ValidationError(
            f"{what} must be a number of seconds from 0 to {MAX_SECONDS:g}, not {seconds!r}", field=what
        )
    return round(seconds * 1000)


def timeout_ms(seconds: float) -> int:
    """A timeout in milliseconds, at least 1: None (not 0) is the only spelling of "no timeout"."""
    ms = seconds_ms(seconds, "timeout")
    if ms == 0:
        raise ValidationError(
            f"timeout must be at least 0.001 s, not {seconds!r} (use timeout=None for no timeout)", field="timeout"
        )
    return ms


def retry_policy(max_retries: int | None, backoff: float | None, retry: RetryPolicy | None) -> RetryPolicy:
    """The task's RetryPolicy: ``retry=`` whole, or built from the simple options, not both."""
    if retry is not None:
        if max_retries is not None or backoff is not None:
            raise ConfigurationError("give either retry=RetryPolicy(...) or max_retries=/backoff=, not both")
        if not isinstance(retry, RetryPolicy):
            raise ConfigurationError(f"retry must be a RetryPolicy, not {type(retry).__name__}")
        return retry
    if isinstance(backoff, RetryPolicy):
        raise ConfigurationError("a RetryPolicy goes in retry=, not backoff= (backoff is the first delay in seconds)")
    simple: dict[str, Any] = {}
    if max_retries is not None:
        simple["max_retries"] = max_retries
    if backoff is not None:
        simple["backoff"] = backoff
    try:
        return RetryPolicy(**simple)
    except ValueError as exc:  # pydantic's ValidationError
        raise ConfigurationError(f"invalid retry options: {exc}") from None


def exception_types(value: object, what: str) -> Errors:
    """``dont_retry`` / ``retry_on``: an exception class or a tuple of them."""
    types = value if isinstance(value, tuple) else (value,)
    for kind in types:
        if not (isinstance(kind, type) and issubclass(kind, BaseException)):
            raise ConfigurationError(f"{what} takes exception classes, not {kind!r}")
    return types


# ------------------------------------------------------------------- arguments


class Arguments:
    """Checks arguments against a function's signature at enqueue, cheaply.

    ``inspect.Signature.bind`` costs about 3 us; for the usual signature (parameters
    passed by position or name, keyword-only ones, no ``*args``/``**kwargs``) two set
    tests decide, and ``bind`` runs only to word the error. Other signatures use ``bind``.
    """

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.shown = "(...)"
        try:
            self.signature: inspect.Signature | None = inspect.signature(fn)
        except (TypeError, ValueError):  # a builtin or C callable without one: not checked
            self.signature = None
            return
        params = list(self.signature.parameters.values())
        bare = [p.replace(annotation=p.empty) for p in params]  # what a message shows: names and defaults
        self.shown = str(self.signature.replace(parameters=bare, return_annotation=inspect.Signature.empty))
        self._fast = all(p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in params)
        positional = [p for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
        keyword_only = [p for p in params if p.kind is p.KEYWORD_ONLY]
        self._max_positional = len(positional)
        kw_names = {p.name for p in keyword_only}
        kw_needed = {p.name for p in keyword_only if p.default is p.empty}
        # For n positional arguments: the names a keyword may use, and those it must give.
        self._allowed = [frozenset(p.name for p in positional[n:]) | kw_names for n in range(len(positional) + 1)]
        self._needed = [
            frozenset(p.name for p in positional[n:] if p.default is p.empty) | kw_needed
            for n in range(len(positional) + 1)
        ]

    def problem(self, args: Sequence[Any], kwargs: Mapping[str, Any] | None) -> str | None:
        """Why ``fn(*args, **kwargs)`` would raise TypeError at the call, else None."""
        if self.signature is None:
            return None
        kwargs = kwargs or {}
        if self._fast:
            n = len(args)
            if n <= self._max_positional and self._allowed[n].issuperset(kwargs) and self._needed[n] <= kwargs.keys():
                return None
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            return str(exc)
        return None

    def check(self, name: str, args: Sequence[Any], kwargs: Mapping[str, Any] | None) -> None:
        problem = self.problem(args, kwargs)
        if problem is not None:
            raise ValidationError(f"arguments do not fit task {name}{self.shown}: {problem}", field="args")


# ---------------------------------------------------------------------- request


def idempotency_key(value: object, what: str) -> str:
    """A ``key`` or ``unique_key`` as the enqueue script takes it ('' for none)."""
    if value is None:
        return ""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_KEY_LENGTH:
        raise ValidationError(f"{what} must be a non-empty string of at most {MAX_KEY_LENGTH} characters", field=what)
    return value


def build_spec(request: TaskRequest, options: TaskOptions, max_payload: int) -> tuple[str, TaskSpec]:
    """Validate and encode one request (the task's name already checked); raises before any write.

    The task function's own options were validated when it was registered, so only what
    the request overrides is checked here (this runs once per enqueued task).
    """
    queue = options.queue if request.queue is None else validate_queue_name(request.queue)
    priority = options.priority
    if request.priority is not None:
        priority = request.priority
        check_priority(priority)
    if not isinstance(request.args, list | tuple) or not isinstance(request.kwargs, dict | None):
        raise ValidationError("args must be a list or tuple and kwargs a dict", field="args")
    args = dumps(request.args, "args") if request.args else b"[]"
    kwargs = dumps(request.kwargs, "kwargs") if request.kwargs else b"{}"
    size = len(args) + len(kwargs)
    if size > max_payload:
        raise PayloadTooLarge(f"arguments are {size} bytes encoded, over the limit of {max_payload}", field="args")
    key, unique_key = idempotency_key(request.key, "key"), idempotency_key(request.unique_key, "unique_key")
    max_retries = request.max_retries
    if max_retries is None:
        max_retries = options.retry.max_retries
    elif isinstance(max_retries, bool) or not isinstance(max_retries, int) or not 0 <= max_retries <= 1000:
        raise ValidationError(
            f"max_retries must be an integer from 0 to 1000, not {max_retries!r}", field="max_retries"
        )
    timeout, backoff_ms, backoff_max_ms = options.timings_ms
    if request.timeout is not None:
        timeout = timeout_ms(request.timeout)
    delay_ms = 0 if request.delay is None else seconds_ms(request.delay, "delay")
    spec = TaskSpec(
        new_task_id(),  # a random 128-bit UUID in 22 characters (ids.py)
        request.name,
        priority,
        args,
        kwargs,
        max_retries,
        timeout,
        backoff_ms,
        backoff_max_ms,
        int(options.retry.jitter),
        delay_ms,
        key,
        unique_key,
    )
    return queue, spec


def new_request(
    name: str,
    args: Sequence[Any] | None,
    kwargs: dict[str, Any] | None,
    options: Mapping[str, Any],  # an EnqueueOptions, as the caller's **options
) -> TaskRequest:
    """A TaskRequest from the public calls' arguments; the caller's list and dict are copied.

    An unknown option raises TypeError naming it, as an explicit keyword parameter would.
    """
    if args is not None and (isinstance(args, str | bytes) or not isinstance(args, list | tuple)):
        raise ValidationError(f"args must be a list or tuple, not {type(args).__name__}", field="args")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise ValidationError(f"kwargs must be a dict, not {type(kwargs).__name__}", field="kwargs")
    args, kwargs = tuple(args) if args else (), dict(kwargs) if kwargs else None
    if not options:  # the hot path (.delay()): no options
        return TaskRequest(name, args, kwargs)
    if not OPTION_NAMES.issuperset(options):
        unknown = sorted(set(options) - OPTION_NAMES)
        raise TypeError(
            f"unexpected keyword argument {unknown[0]!r}; the options are: {', '.join(EnqueueOptions.__annotations__)}"
        )
    return TaskRequest(name, args, kwargs, **options)
