"""``TaskFunction``: what ``@app.task`` returns, a function that can also be enqueued.

Owns a registered function's name, options and signature check, and the shortcuts that
enqueue it (``delay``, ``enqueue``, ``request``), typed so that their handles carry the
task's result type: ``TaskHandle[R]`` for a function returning ``R`` and for an
``async def`` returning ``R`` (each shortcut is overloaded on ``self``: a coroutine
function's ``R`` is what its coroutine gives). Does not validate or send anything
itself: every call goes through its ``Orchestrator``.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from typing_extensions import Unpack  # typing.Unpack (PEP 692) is Python 3.12+

from .encoding import Arguments, EnqueueOptions, TaskOptions, TaskRequest, new_request
from .handle import TaskHandle

if TYPE_CHECKING:
    from .client import Orchestrator

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")  # the result type a handle carries
Async = Coroutine[Any, Any, T]  # what an ``async def`` returning T returns when called


class TaskFunction(Generic[P, R]):
    """A registered task: call it to run it here, ``.delay()`` / ``.enqueue()`` to queue it."""

    def __init__(self, app: Orchestrator, fn: Callable[P, R], name: str, options: TaskOptions) -> None:
        self.app = app
        self.fn = fn
        self.name = name
        self.options = options
        self.arguments = Arguments(fn)  # the signature, read once: checked at every enqueue
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", name)
        self.__wrapped__ = fn

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    @overload
    def delay(self: TaskFunction[P, Async[T]], *args: P.args, **kwargs: P.kwargs) -> TaskHandle[T]: ...
    @overload
    def delay(self: TaskFunction[P, T], *args: P.args, **kwargs: P.kwargs) -> TaskHandle[T]: ...

    def delay(self, *args: Any, **kwargs: Any) -> TaskHandle[Any]:
        """Enqueue with the task's default options."""
        return self.app.enqueue(self.name, args, kwargs)

    @overload
    async def adelay(self: TaskFunction[P, Async[T]], *args: P.args, **kwargs: P.kwargs) -> TaskHandle[T]: ...
    @overload
    async def adelay(self: TaskFunction[P, T], *args: P.args, **kwargs: P.kwargs) -> TaskHandle[T]: ...

    async def adelay(self, *args: Any, **kwargs: Any) -> TaskHandle[Any]:
        return await self.app.aenqueue(self.name, args, kwargs)

    @overload
    def enqueue(
        self: TaskFunction[P, Async[T]],
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Unpack[EnqueueOptions],
    ) -> TaskHandle[T]: ...
    @overload
    def enqueue(
        self: TaskFunction[P, T],
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Unpack[EnqueueOptions],
    ) -> TaskHandle[T]: ...

    def enqueue(
        self,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Unpack[EnqueueOptions],
    ) -> TaskHandle[Any]:
        """Enqueue with options: queue, priority, delay, key, unique_key, max_retries, timeout."""
        return self.app.enqueue(self.name, args, kwargs, **options)

    @overload
    async def aenqueue(
        self: TaskFunction[P, Async[T]],
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Unpack[EnqueueOptions],
    ) -> TaskHandle[T]: ...
    @overload
    async def aenqueue(
        self: TaskFunction[P, T],
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Unpack[EnqueueOptions],
    ) -> TaskHandle[T]: ...

    async def aenqueue(
        self,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Unpack[EnqueueOptions],
    ) -> TaskHandle[Any]:
        return await self.app.aenqueue(self.name, args, kwargs, **options)

    def request(
        self,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Unpack[EnqueueOptions],
    ) -> TaskRequest:
        """A TaskRequest for ``app.enqueue_many``."""
        return new_request(self.name, args, kwargs, options)
