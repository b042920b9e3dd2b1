"""Typed results: a handle carries its task's return type, and mypy checks its use.

``@app.task`` keeps the function's signature, so ``fn.delay(...)`` checks the arguments
and returns a ``TaskHandle[R]`` for a function annotated ``-> R``; ``handle.result()``
and ``await handle.aresult()`` are then typed ``R``. For an ``async def`` task ``R`` is
what it returns once awaited, not a coroutine. Enqueueing by name
(``app.enqueue("mod:fn", ...)``), which needs no import of the function, gives a
``TaskHandle[Any]``.

The type is the task's promise, checked where the task is written, not at run time: a
result travels as JSON, so a task annotated ``-> tuple[int, int]`` hands back a list.
Annotate with JSON types (``int``, ``str``, ``list``, ``dict[str, ...]``, TypedDicts).

Check it (the project's ``mypy`` covers this file) and run it against a worker:

    mypy examples/typed_results.py
    orch worker --app examples.typed_results       # in one terminal
    python -m examples.typed_results               # in another: prints the results
"""

from __future__ import annotations

import asyncio
from typing import Any, TypedDict

from orchestrator import Orchestrator, TaskHandle

app = Orchestrator()  # ORCH_REDIS_URL, else redis://localhost:6379/0


class Size(TypedDict):
    width: int
    height: int


@app.task(name="examples.typed_results:area")
def area(width: int, height: int) -> int:
    return width * height


@app.task(name="examples.typed_results:scale")
def scale(size: Size, factor: int) -> Size:
    return {"width": size["width"] * factor, "height": size["height"] * factor}


@app.task(name="examples.typed_results:greet")
async def greet(name: str) -> str:
    await asyncio.sleep(0)
    return f"hello {name}"


def use_sync(timeout: float = 10.0) -> tuple[int, Size, str]:
    """Enqueue three tasks and wait for them; every line below is checked by mypy."""
    handle: TaskHandle[int] = area.delay(3, 4)
    n: int = handle.result(timeout=timeout)
    size: Size = scale.enqueue([{"width": 2, "height": 3}, 10], priority=1).result(timeout=timeout)
    text: str = greet.delay("ada").result(timeout=timeout)  # an async task: str, not a coroutine
    return n, size, text


async def use_async(timeout: float = 10.0) -> tuple[int, str, Any]:
    """The same from async code: ``adelay`` and ``aresult``."""
    n: int = await (await area.adelay(5, 6)).aresult(timeout=timeout)
    text: str = await (await greet.adelay("grace")).aresult(timeout=timeout)
    by_name: TaskHandle[Any] = await app.aenqueue("examples.typed_results:area", [7, 8])  # not imported: Any
    return n, text, await by_name.aresult(timeout=timeout)


if __name__ == "__main__":
    print(use_sync())
    print(asyncio.run(use_async()))
