"""``TaskFunction``: what ``@app.task`` returns, a function that can also be enqueued.

Owns a registered function's name, options and signature check, and the shortcuts that
enqueue it (``delay``, ``enqueue``, ``request``). Does not validate or send anything
itself: every call goes through its ``Orchestrator``.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from typing_extensions import Unpack  # typing.Unpack (PEP 692) is Python 3.12+

from .encoding import Arguments, EnqueueOptions, TaskOptions, TaskRequest, new_request
from .handle import TaskHandle

if TYPE_CHECKING:
    from .client import Orchestrator

P = ParamSpec("P")
R = TypeVar("R")


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

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> TaskHandle:
        """Enqueue with the task's default options."""
        return self.app.enqueue(self.name, args, kwargs)

    async def adelay(self, *args: P.args, **kwargs: P.kwargs) -> TaskHandle:
        return await self.app.aenqueue(self.name, args, kwargs)

    def enqueue(
        self,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Unpack[EnqueueOptions],
    ) -> TaskHandle:
        """Enqueue with options: queue, priority, delay, key, unique_key, max_retries, timeout."""
        return self.app.enqueue(self.name, args, kwargs, **options)

    async def aenqueue(
        self,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Unpack[EnqueueOptions],
    ) -> TaskHandle:
        return await self.app.aenqueue(self.name, args, kwargs, **options)

    def request(
        self,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Unpack[EnqueueOptions],
    ) -> TaskRequest:
        """A TaskRequest for ``app.enqueue_many``."""
        return new_request(self.name, args, kwargs, options)
