"""The producer's guard rails (issue 10): every mistake a new user made, refused at the door.

Strict JSON payloads, task names, arguments checked against a registered signature,
retry and timeout options, finding a task by id alone, and redis-py's errors in the
OrchestratorError tree. Each refusal is checked for its message and for leaving Redis
byte-for-byte unchanged.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import decimal
import enum
import logging
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from orchestrator import (
    ConfigurationError,
    NotSerializable,
    Orchestrator,
    RedisCommandError,
    RedisUnavailable,
    RetryPolicy,
    Settings,
    TaskNotFound,
    TaskState,
    ValidationError,
)
from orchestrator.models import dumps, loads
from tests.redis_server import RedisServer, snapshot


class Colour(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 1


class Mode(str, enum.Enum):
    FAST = "fast"


class Name(str):
    pass


@dataclasses.dataclass
class Point:
    x: int


NOT_JSON: list[tuple[str, Any]] = [
    ("datetime", datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)),
    ("date", datetime.date(2026, 1, 1)),
    ("uuid", uuid.UUID(int=1)),
    ("decimal", decimal.Decimal("1.5")),
    ("dataclass", Point(1)),
    ("enum", Colour.RED),
    ("int-enum", Level.HIGH),  # equal to 1, but would come back as a plain int
    ("str-enum", Mode.FAST),
    ("str-subclass", Name("x")),
    ("nan", float("nan")),
    ("inf", float("inf")),
    ("-inf", float("-inf")),
    ("set", {1}),
    ("bytes", b"x"),
    ("int-beyond-64-bits", 2**70),
]


@pytest.mark.parametrize(("what", "value"), NOT_JSON, ids=[w for w, _ in NOT_JSON])
@pytest.mark.parametrize("where", ["args", "kwargs", "nested"])
def test_arguments_that_would_not_round_trip_are_refused(app, r, what, value, where):
    app.enqueue("tests.jobs:job", key="existing")
    before = snapshot(r)
    args, kwargs, path = {
        "args": ([value], None, "args[0]"),
        "kwargs": ((), {"v": value}, "kwargs['v']"),
        "nested": ([{"a": [1, (2, value)]}], None, "args[0]['a'][1][1]"),
    }[where]
    with pytest.raises(NotSerializable) as info:
        app.enqueue("tests.jobs:job", args, kwargs)
    assert str(info.value).startswith(path), info.value
    assert snapshot(r) == before


def test_non_str_keys_and_self_containing_values_are_refused(app, r):
    before = snapshot(r)
    with pytest.raises(NotSerializable, match=r"args\[0\] has a key 1 of type int"):
        app.enqueue("j", [{1: "x"}])
    looped: list[Any] = []
    looped.append(looped)
    with pytest.raises(NotSerializable, match="nested more than"):
        app.enqueue("j", [looped])
    assert snapshot(r) == before


def test_json_arguments_round_trip_and_tuples_come_back_as_lists(app):
    args = ["s", 1, -2**63, 2**64 - 1, 1.5, -0.0, True, None, [1, [2]], {"k": {"n": None}}, "é\u2028"]
    handle = app.enqueue("j", args, {"t": (1, (2, 3))})
    task = handle.info()
    assert task.args == args
    assert task.kwargs == {"t": [1, [2, 3]]}  # the one documented conversion: tuple -> list


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ([0.5] * 1000 + [float("nan")], "result[1000]"),  # numbers only: checked in one pass
        ([1.5, "x", None, float("inf")], "result[3]"),  # floats mixed with str and None
        ({"v": [1, 2.5, float("-inf")]}, "result['v'][2]"),
    ],
)
def test_non_finite_floats_are_found_in_every_kind_of_list(value, path):
    with pytest.raises(NotSerializable, match=r"JSON has no NaN or Infinity") as info:
        dumps(value, "result")
    assert str(info.value).startswith(f"{path} is "), info.value
    fine = [0.5] * 1000 + [1, True]
    assert loads(dumps(fine, "result")) == fine


def test_dumps_is_strict_for_results_too():
    with pytest.raises(NotSerializable, match=r"result\['when'\] is a datetime.date"):
        dumps({"when": datetime.date(2026, 1, 1)}, "result")
    assert loads(dumps({"a": (1, 2)}, "result")) == {"a": [1, 2]}


# ----------------------------------------------------------------------- task names

BAD_NAMES = ["", "x" * 257, "has space", "new\nline", "tab\there", "nul\x00", "bell\x07", "del\x7f", "nbsp\xa0x",
             "line\u2028sep", 5, None]


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_bad_task_names_are_refused_at_enqueue(app, r, name):
    before = snapshot(r)
    with pytest.raises(ValidationError, match="task name"):
        app.enqueue(name)
    with pytest.raises(ValidationError, match="task name"):
        app.enqueue_many([app.request(name)])
    assert snapshot(r) == before


@pytest.mark.parametrize("name", [n for n in BAD_NAMES if isinstance(n, str) and n], ids=repr)
def test_bad_task_names_are_refused_at_registration(app, name):
    with pytest.raises(ConfigurationError, match="task name"):

        @app.task(name=name)
        def job() -> None: ...

    assert app.registry == {}


def test_good_task_names_need_no_colon(app):
    @app.task(name="resize")
    def job() -> None: ...

    for name in ("resize", "x" * 256, "images.tasks:resize", "émile-ß"):
        assert app.enqueue(name).info().name == name


# ------------------------------------------------------------------------ signatures


@pytest.fixture
def resize(app: Orchestrator) -> Any:
    @app.task(name="images:resize")
    def resize(path: str, width: int = 100, *, mode: str = "fit") -> str:
        return path

    return resize


@pytest.mark.parametrize(
    ("args", "kwargs", "problem"),
    [
        ((), None, "missing a required argument: 'path'"),
        (("a", 1, 2), None, "too many positional arguments"),
        (("a",), {"height": 2}, "unexpected keyword argument 'height'"),
        (("a",), {"path": "b"}, "multiple values for argument 'path'"),
        (("a", 1, "fill"), None, "too many positional arguments"),
    ],
)
def test_arguments_that_do_not_fit_a_registered_signature_are_refused(app, r, resize, args, kwargs, problem):
    before = snapshot(r)
    with pytest.raises(ValidationError, match=problem) as info:
        app.enqueue("images:resize", args, kwargs)
    assert "images:resize(path, width=100, *, mode='fit'): " in str(info.value)
    with pytest.raises(ValidationError, match=problem):
        resize.delay(*args, **(kwargs or {}))
    with pytest.raises(ValidationError, match=problem):
        app.enqueue_many([resize.request(args, kwargs)])
    assert snapshot(r) == before


def test_arguments_that_fit_are_accepted(app, resize):
    for args, kwargs in [(("a",), None), (("a", 5), None), ((), {"path": "a", "width": 5}), (("a",), {"mode": "x"})]:
        assert app.enqueue("images:resize", args, kwargs).status() is TaskState.PENDING


def test_unusual_signatures_are_checked_by_bind(app, r):
    @app.task(name="varargs")
    def varargs(a: int, /, *rest: int, **extra: int) -> None: ...

    assert app.enqueue("varargs", [1, 2, 3], {"x": 1}).status() is TaskState.PENDING
    before = snapshot(r)
    with pytest.raises(ValidationError, match="missing a required argument: 'a'"):
        app.enqueue("varargs")
    with pytest.raises(ValidationError, match="positional only"):
        app.enqueue("varargs", kwargs={"a": 1})
    assert snapshot(r) == before


def test_an_unregistered_name_is_accepted_and_logged_once_at_debug(app, caplog):
    caplog.set_level(logging.DEBUG, logger="orchestrator.client")
    for _ in range(3):
        app.enqueue("other.service:job", [1, 2, 3])
    lines = [rec.getMessage() for rec in caplog.records if "other.service:job" in rec.getMessage()]
    assert len(lines) == 1 and "no function registered" in lines[0], lines
    assert caplog.records[0].levelno == logging.DEBUG


# ------------------------------------------------------------------ retries, timeouts


def test_a_retry_policy_is_kept_whole(app):
    policy = RetryPolicy(max_retries=10, backoff=2, backoff_max=60, jitter=False)

    @app.task(name="kept", retry=policy)
    def kept() -> None: ...

    assert kept.options.retry == policy
    task = kept.delay().info()
    assert (task.max_retries, task.backoff_ms, task.backoff_max_ms, task.jitter) == (10, 2000, 60_000, False)

    @app.task(name="simple", max_retries=5, backoff=0.5)
    def simple() -> None: ...

    assert (simple.options.retry.max_retries, simple.options.retry.backoff) == (5, 0.5)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"retry": RetryPolicy(), "max_retries": 2}, "not both"),
        ({"retry": RetryPolicy(), "backoff": 2}, "not both"),
        ({"backoff": RetryPolicy(max_retries=10)}, "goes in retry="),
        ({"retry": {"max_retries": 1}}, "must be a RetryPolicy"),
        ({"dont_retry": (ValueError, "TypeError")}, "exception classes"),
        ({"retry_on": int}, "exception classes"),
        ({"timeout": 0}, "timeout=None for no timeout"),
        ({"timeout": 1e-4}, "at least 0.001"),
    ],
)
def test_retry_and_timeout_mistakes_are_refused_at_registration(app, options, message):
    with pytest.raises(ConfigurationError, match=message):

        @app.task(**options)
        def job() -> None: ...

    assert app.registry == {}


@pytest.mark.parametrize("timeout", [0, 0.0, 1e-4, 0.00049])
def test_a_zero_timeout_is_refused_at_enqueue(app, r, timeout):
    before = snapshot(r)
    with pytest.raises(ValidationError, match="timeout=None for no timeout"):
        app.enqueue("j", timeout=timeout)
    assert snapshot(r) == before


def test_none_is_the_only_spelling_of_no_timeout(app):
    @app.task(name="forever", timeout=None)
    def forever() -> None: ...

    assert forever.delay().info().timeout_ms == 0
    assert app.enqueue("j", timeout=0.001).info().timeout_ms == 1


# ------------------------------------------------------------------------- lookups


def test_a_task_is_found_by_id_alone(app):
    handle = app.enqueue("j", queue="elsewhere")
    assert app.get_task(handle.id).queue == "elsewhere"
    assert app.handle(handle.id) == handle
    assert app.cancel(handle.id) is TaskState.CANCELLED
    with pytest.raises(TaskNotFound, match="no task nope in any queue"):
        app.get_task("nope")
    with pytest.raises(TaskNotFound, match="no task nope in any queue"):
        app.cancel("nope")


def test_a_task_is_found_by_id_alone_async(app):
    async def main() -> None:
        handle = await app.aenqueue("j", queue="elsewhere")
        assert (await app.aget_task(handle.id)).queue == "elsewhere"
        assert await app.acancel(handle.id) is TaskState.CANCELLED
        with pytest.raises(TaskNotFound, match="in any queue"):
            await app.aget_task("nope")
        await app.aclose()

    asyncio.run(main())


# -------------------------------------------------------------------- Redis errors


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def down() -> Iterator[Orchestrator]:
    app = Orchestrator(settings=Settings(redis_url=f"redis://127.0.0.1:{_closed_port()}/0"))
    yield app
    app.close()


def test_unreachable_redis_is_redis_unavailable_with_its_cause(down):
    calls = [
        lambda: down.enqueue("j"),
        lambda: down.enqueue_many([down.request("j")]),
        lambda: down.get_task("x", "default"),
        lambda: down.get_task("x"),
        lambda: down.cancel("x", "default"),
        lambda: down.handle("x", "default").status(),
    ]
    for call in calls:
        with pytest.raises(RedisUnavailable, match="Redis is unavailable") as info:
            call()
        assert isinstance(info.value.__cause__, redis.ConnectionError)


def test_unreachable_redis_is_redis_unavailable_async(down):
    async def main() -> None:
        with pytest.raises(RedisUnavailable) as info:
            await down.aenqueue("j")
        assert isinstance(info.value.__cause__, redis.ConnectionError)
        with pytest.raises(RedisUnavailable):
            await down.handle("x", "default").astatus()
        await down.aclose()

    asyncio.run(main())


def test_an_error_redis_answers_with_is_redis_command_error(redis_server: RedisServer):
    app = Orchestrator(settings=Settings(redis_url=f"{redis_server.url.rsplit('/', 1)[0]}/99"))
    try:
        with pytest.raises(RedisCommandError) as info:
            app.enqueue("j")
        assert isinstance(info.value.__cause__, redis.RedisError)
    finally:
        app.close()
