"""examples/typed_results.py: handles carry their task's result type, checked by mypy.

mypy (its API, with the project's configuration) reads snippets that use the example's
tasks: each line marked ``# E: <text>`` must give an error with that text on that line,
and no other line may give one; ``reveal_type`` pins the exact types. The example itself
is run against the suite's redis-server with an in-process worker.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mypy import api

from examples import typed_results
from orchestrator import Orchestrator
from orchestrator.redis_local import LocalRedis
from tests.examples.running import pointed_at, running_worker
from tests.integration.procs import ROOT

SNIPPET = '''
from typing import Any
from examples.typed_results import app, area, greet, scale, Size
from orchestrator import TaskHandle

reveal_type(area.delay(3, 4))  # N: orchestrator.handle.TaskHandle[int]
reveal_type(greet.delay("ada"))  # N: orchestrator.handle.TaskHandle[str]
reveal_type(greet.enqueue(["ada"], priority=1).result())  # N: str
reveal_type(app.enqueue("examples.typed_results:area", [3, 4]))  # N: orchestrator.handle.TaskHandle[Any]
reveal_type(app.handle("some-id", "default").result())  # N: Any
size: Size = scale.delay({"width": 1, "height": 2}, 3).result()

ok: int = area.delay(3, 4).result(timeout=1)
wider: TaskHandle[object] = area.delay(3, 4)  # a handle is covariant in its result
wrong: int = scale.delay({"width": 1, "height": 2}, 3).result()  # E: variable has type "int"
text: str = area.delay(3, 4).result()  # E: expression has type "int", variable has type "str"
number: int = greet.delay("ada").result()  # E: expression has type "str", variable has type "int"
area.delay("3", 4)  # E: Argument 1 to "delay" of "TaskFunction" has incompatible type "str"; expected "int"
area.delay(3)  # E: Missing positional argument "height" in call to "delay" of "TaskFunction"
greet.delay(name=1)  # E: No overload variant of "delay" of "TaskFunction" matches argument type "int"
area.enqueue([3, 4], priority="high")  # E: Argument "priority" to "enqueue" of "TaskFunction" has incompatible

async def later() -> None:
    reveal_type(await (await greet.adelay("x")).aresult())  # N: str
    reveal_type(await area.aenqueue([1, 2]))  # N: orchestrator.handle.TaskHandle[int]
    bad: bytes = await (await area.adelay(1, 2)).aresult()  # E: expression has type "int", variable has type "bytes"
'''

MARK = re.compile(r"#\s*([NE]): (.*)$")  # N: the exact revealed type; E: part of the error


def mypy_messages(source: str, where: Path) -> dict[int, list[str]]:
    """mypy's notes and errors on ``source`` (strict, the project's configuration), by line.

    Run from the repository's root, where ``examples`` imports; the snippet is a file
    (``-c`` clashes with the configuration's ``files``)."""
    snippet = where / "snippet.py"
    snippet.write_text(source)
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        out, err, _status = api.run(["--config-file", "pyproject.toml", "--no-error-summary", str(snippet)])
    finally:
        os.chdir(cwd)
    assert not err, err
    found: dict[int, list[str]] = {}
    for line in out.splitlines():
        match = re.match(r".*snippet\.py:(\d+): (?:error|note): (.*)", line)
        assert match, f"unexpected mypy output: {line}"
        message = match.group(2).replace("builtins.", "")  # older mypy says builtins.int
        found.setdefault(int(match.group(1)), []).append(message)
    return found


def test_mypy_types_handles_from_the_tasks_annotations(tmp_path: Path) -> None:
    found = mypy_messages(SNIPPET, tmp_path)
    expected: dict[int, str] = {}
    for number, line in enumerate(SNIPPET.splitlines(), start=1):
        mark = MARK.search(line)
        if mark:
            kind, text = mark.groups()
            expected[number] = f'Revealed type is "{text}"' if kind == "N" else text
    assert len(expected) == 15
    for number, text in expected.items():
        messages = found.get(number, [])
        hit = text in messages if text.startswith("Revealed") else any(text in m for m in messages)
        assert hit, f"line {number}: wanted {text!r}, mypy said {messages!r}"
    unexpected = {n: m for n, m in found.items() if n not in expected}
    assert not unexpected, f"mypy complained about lines that should pass: {unexpected}"


def test_the_snippet_less_its_wrong_lines_passes(tmp_path: Path) -> None:
    """What fails above is the marked lines, not the snippet's set-up."""
    clean = "\n".join(line for line in SNIPPET.splitlines() if not MARK.search(line) or "# N:" in line)
    found = mypy_messages(clean, tmp_path)
    assert all(all(m.startswith("Revealed type") for m in ms) for ms in found.values()), found


# ------------------------------------------------------------------- at run time


@pytest.fixture
def example_app(app: Orchestrator, redis_server: LocalRedis) -> Iterator[Orchestrator]:
    """The example's own ``app`` pointed at the suite's (emptied) redis-server for one test."""
    with pointed_at(typed_results.app, redis_server.url) as example:
        yield example


def test_the_example_runs_against_a_worker(example_app: Orchestrator) -> None:
    async def use_async() -> tuple[int, str, Any]:
        try:
            return await typed_results.use_async(timeout=10)
        finally:
            await example_app.aclose()  # its async client belongs to this loop

    with running_worker(example_app, "examples.typed_results"):
        assert typed_results.use_sync(timeout=10) == (12, {"width": 20, "height": 30}, "hello ada")
        assert asyncio.run(use_async()) == (30, "hello grace", 56)
