"""The producer API end to end on a real redis-server.

No worker exists here: task states are driven with transitions calls (claim, complete,
fail, cancel), as a worker would. Every rejected input must leave Redis byte-for-byte
unchanged.
"""

from __future__ import annotations

import asyncio
import threading

import orjson
import pytest

from orchestrator import (
    ConfigurationError,
    InvalidPriority,
    InvalidQueueName,
    NotSerializable,
    Orchestrator,
    OutOfMemory,
    PartiallyEnqueued,
    PayloadTooLarge,
    ResultTimeout,
    RetryPolicy,
    Settings,
    TaskCancelled,
    TaskFailed,
    TaskHandle,
    TaskNotFound,
    TaskState,
    ValidationError,
)
from orchestrator.client import ENQUEUE_CHUNK
from orchestrator.config import REDIS_URL_ENV
from orchestrator.encoding import EnqueueOptions, TaskRequest
from orchestrator.keys import queues_key
from orchestrator.script_calls import run
from orchestrator.transitions import TaskSpec
from tests.redis_server import snapshot

S = TaskState
ERROR = {"type": "ValueError", "message": "bad width", "traceback": "Traceback ..."}


def task_keys(r) -> list[bytes]:
    return list(r.scan_iter(match="orch:{*}:task:*", count=1000))


def finish(app: Orchestrator, handle: TaskHandle, how: str, result: object = None) -> None:
    """Do what a worker would: claim the task, then end it ``how``."""
    t = app._scripts(handle.queue)
    [lease] = run(app.redis, t.claim("w1", 1, 60_000))
    assert lease.task_id == handle.id
    if how == "success":
        run(app.redis, t.complete(handle.id, lease.token, orjson.dumps(result), 0))
    elif how == "failed":
        run(app.redis, t.fail(handle.id, lease.token, orjson.dumps(ERROR), mode="fatal"))
    else:
        assert run(app.redis, t.cancel(handle.id, 0)) is S.RUNNING
        run(app.redis, t.fail(handle.id, lease.token, orjson.dumps(ERROR), mode="cancelled"))


def spy_first_status(handle: TaskHandle) -> threading.Event:
    """An event set once ``handle.result()`` has looked at the task's state at least once."""
    looked = threading.Event()
    status = handle.status

    def spying() -> TaskState:
        state = status()
        looked.set()
        return state

    handle.status = spying  # type: ignore[method-assign]
    return looked


# ------------------------------------------------------------------- enqueue


def test_enqueue_by_name_creates_a_pending_task(app, r):
    handle = app.enqueue("images.tasks:resize", args=["a.png"], kwargs={"width": 200})
    assert (handle.queue, handle.created) == ("default", True)
    assert handle.status() is S.PENDING
    task = handle.info()
    assert (task.id, task.name, task.queue, task.state) == (handle.id, "images.tasks:resize", "default", S.PENDING)
    assert (task.args, task.kwargs, task.priority, task.attempts) == (["a.png"], {"width": 200}, 5, 0)
    assert (task.max_retries, task.timeout_ms) == (3, 300_000)
    assert r.zrange(app.keys("default").pending, 0, -1) == [handle.id.encode()]
    assert r.smembers(queues_key()) == {b"default"}


def test_registered_task_uses_its_options_and_stays_callable(app):
    @app.task(queue="images", priority=2, timeout=12.5, retry=RetryPolicy(max_retries=7, backoff=3, jitter=False))
    def resize(path: str, width: int) -> str:
        return f"{path}@{width}"

    assert resize("a.png", 10) == "a.png@10"
    assert resize.name == f"{__name__}:{resize.fn.__qualname__}"
    handle = resize.delay("a.png", width=200)
    task = handle.info()
    assert (handle.queue, task.name, task.priority, task.max_retries, task.timeout_ms) == (
        "images", resize.name, 2, 7, 12_500
    )
    assert (task.args, task.kwargs, task.backoff_ms, task.jitter) == (["a.png"], {"width": 200}, 3000, False)
    # By name, the registered defaults apply too; options override them.
    other = app.enqueue(resize.name, ["b.png", 5], priority=0, max_retries=1, timeout=2, queue="thumbs")
    task = other.info()
    assert (other.queue, task.priority, task.max_retries, task.timeout_ms) == ("thumbs", 0, 1, 2000)
    unset = app.enqueue(resize.name, ["c.png", 5], timeout=None).info()  # None: not given, the default
    assert (unset.queue, unset.timeout_ms, unset.priority) == ("images", 12_500, 2)


def test_bare_decorator_registers_with_defaults(app):
    @app.task
    def ping() -> str:
        return "pong"

    handle = ping.enqueue(priority=1)
    assert (handle.queue, handle.info().priority, handle.info().name) == ("default", 1, ping.name)
    assert app.registry[ping.name] is ping


def test_delay_schedules_the_task(app, r):
    handle = app.enqueue("tests.jobs:job", delay=5)
    assert handle.status() is S.SCHEDULED
    task = handle.info()
    assert task.run_at == task.created_at + 5000
    assert r.zscore(app.keys("default").scheduled, handle.id) == task.run_at
    assert r.zcard(app.keys("default").pending) == 0
    fraction = app.enqueue("tests.jobs:job", delay=0.25).info()
    assert fraction.run_at == fraction.created_at + 250


# Idempotency keys (key=, unique_key=): tests/lua/test_idempotency.py


# ------------------------------------------------------------------ bulk


def test_enqueue_many_across_queues_keeps_the_order_of_handles(app, r):
    queues = ["a" if i % 4 else ("b" if i % 8 else "c") for i in range(2600)]
    requests = [app.request("tests.jobs:job", [i], queue=q, priority=i % 10) for i, q in enumerate(queues)]
    handles = app.enqueue_many(requests)
    assert queues.count("a") > 1000  # crosses a script-call chunk
    assert [h.queue for h in handles] == queues
    assert len({h.id for h in handles}) == 2600
    with r.pipeline(transaction=False) as pipe:
        for h in handles:
            pipe.hget(app.keys(h.queue).task(h.id), "args")
        args = pipe.execute()
    assert [orjson.loads(a) for a in args] == [[i] for i in range(2600)]
    assert r.smembers(queues_key()) == {b"a", b"b", b"c"}
    for queue in ("a", "b", "c"):
        mine = [(i % 10, i) for i, q in enumerate(queues) if q == queue]
        leases = run(r, app._scripts(queue).claim("w1", 2000, 60_000))
        assert [lease.args[0] for lease in leases] == [i for _, i in sorted(mine)]


@pytest.mark.parametrize("failing", ["first", "second"])
def test_enqueue_many_reports_which_tasks_landed_when_a_call_fails(app, r, monkeypatch, failing):
    """The calls of enqueue_many go out together: when one fails, the caller learns which
    tasks were enqueued (PartiallyEnqueued.handles), or gets the error when none were."""
    import orchestrator.client as client_module

    real = client_module.run_many
    refused = OutOfMemory("refused for the test")

    def one_call_refused(client, calls, wait=None):
        if failing == "first":
            return [refused, *real(client, calls[1:], wait)]
        return [*real(client, calls[:1], wait), refused, *real(client, calls[2:], wait)]

    monkeypatch.setattr(client_module, "run_many", one_call_refused)
    requests = [app.request("tests.jobs:job", [i]) for i in range(ENQUEUE_CHUNK + 10)]  # two calls
    with pytest.raises(PartiallyEnqueued) as info:
        app.enqueue_many(requests)
    landed = info.value.handles
    assert info.value.__cause__ is refused
    assert len(landed) == (10 if failing == "first" else ENQUEUE_CHUNK)
    assert r.zcard(app.keys("default").pending) == len(landed)
    assert all(h.status() is S.PENDING for h in landed)
    args = [h.info().args[0] for h in landed]
    first = ENQUEUE_CHUNK if failing == "first" else 0
    assert args == list(range(first, first + len(landed)))

    monkeypatch.setattr(client_module, "run_many", lambda client, calls, wait=None: [refused] * len(calls))
    with pytest.raises(OutOfMemory):  # nothing landed: the error itself
        app.enqueue_many(requests)


def test_enqueue_many_with_keys_and_mixed_options(app):
    handles = app.enqueue_many(
        [
            app.request("j", key="x"),
            app.request("j", key="x"),
            app.request("j", delay=60),
            app.request("j", queue="other", key="x"),
        ]
    )
    assert handles[0].id == handles[1].id and handles[1].created is False
    assert [h.status() for h in handles] == [S.PENDING, S.PENDING, S.SCHEDULED, S.PENDING]
    assert handles[3].id != handles[0].id
    assert app.enqueue_many([]) == []


# ------------------------------------------------------------- TaskHandle


def test_result_times_out_while_the_task_is_not_done(app):
    handle = app.enqueue("tests.jobs:job")
    with pytest.raises(ResultTimeout, match=handle.id):
        handle.result(timeout=0.05)
    with pytest.raises(ResultTimeout):
        handle.result(timeout=0)
    run(app.redis, app._scripts("default").claim("w1", 1, 60_000))
    assert handle.status() is S.RUNNING
    with pytest.raises(ResultTimeout):
        handle.result(timeout=0.02)


def test_result_waits_for_the_task_to_finish(app):
    handle = app.enqueue("tests.jobs:job")
    looked = spy_first_status(handle)
    outcome: list[object] = []
    waiter = threading.Thread(target=lambda: outcome.append(handle.result(timeout=10)))
    waiter.start()
    assert looked.wait(timeout=10)  # result() has seen the task unfinished ...
    finish(app, handle, "success", {"size": [200, 100]})  # ... and now it ends
    waiter.join(timeout=10)
    assert outcome == [{"size": [200, 100]}]


@pytest.mark.parametrize("value", [None, 0, "", [], {"a": 1}, "é"])
def test_result_returns_the_stored_value(app, value):
    handle = app.enqueue("tests.jobs:job")
    finish(app, handle, "success", value)
    assert handle.status() is S.SUCCESS
    assert handle.result(timeout=1) == value
    assert handle.info().result == value


def test_result_of_a_failed_task_raises_task_failed(app):
    handle = app.enqueue("tests.jobs:job")
    finish(app, handle, "failed")
    with pytest.raises(TaskFailed) as info:
        handle.result(timeout=1)
    assert info.value.task_id == handle.id
    assert info.value.error == ERROR
    assert handle.info().error.message == "bad width"


@pytest.mark.parametrize("how", ["waiting", "running"])
def test_result_of_a_cancelled_task_raises_task_cancelled(app, how):
    handle = app.enqueue("tests.jobs:job")
    if how == "waiting":
        assert handle.cancel() is S.CANCELLED
    else:
        finish(app, handle, "cancelled")
    with pytest.raises(TaskCancelled):
        handle.result(timeout=1)


def test_unknown_task_is_not_found(app):
    ghost = TaskHandle(app, "nope", "default")
    with pytest.raises(TaskNotFound):
        ghost.status()
    with pytest.raises(TaskNotFound):
        ghost.info()
    with pytest.raises(TaskNotFound):
        ghost.result(timeout=1)
    with pytest.raises(TaskNotFound):
        app.cancel("nope")
    with pytest.raises(TaskNotFound):
        app.find_task("nope")


def test_find_task_searches_every_known_queue(app):
    handle = app.enqueue("tests.jobs:job", queue="elsewhere")
    assert app.find_task(handle.id).queue == "elsewhere"
    assert app.get_task(handle.id).queue == "elsewhere"  # no queue given: every known queue
    with pytest.raises(TaskNotFound, match="in queue 'default'"):
        app.get_task(handle.id, "default")


def test_handles_compare_by_id_and_queue(app):
    handle = app.enqueue("tests.jobs:job")
    assert handle == TaskHandle(app, handle.id, "default")
    assert handle != TaskHandle(app, handle.id, "other")
    assert len({handle, TaskHandle(app, handle.id, "default")}) == 1
    assert handle.id in repr(handle)


# ------------------------------------------------------------------- async


def test_async_twin(app, r):
    @app.task(queue="async-q")
    def job(x: int) -> int:
        return x

    async def main() -> None:
        try:
            handle = await app.aenqueue("tests.jobs:job", [1], priority=3)
            assert await handle.astatus() is S.PENDING
            task = await handle.ainfo()
            assert (task.args, task.priority) == ([1], 3)
            with pytest.raises(ResultTimeout):
                await handle.aresult(timeout=0.05)

            looked = asyncio.Event()
            astatus = handle.astatus

            async def spying() -> TaskState:
                state = await astatus()
                looked.set()
                return state

            handle.astatus = spying  # type: ignore[method-assign]

            async def finisher() -> None:
                await asyncio.wait_for(looked.wait(), timeout=10)
                await asyncio.to_thread(finish, app, handle, "success", "done")

            result, _ = await asyncio.gather(handle.aresult(timeout=10), finisher())
            assert result == "done"

            many = await app.aenqueue_many([app.request("j", [i], queue="bulk") for i in range(3)])
            assert [h.queue for h in many] == ["bulk"] * 3
            assert await many[0].acancel() is S.CANCELLED
            with pytest.raises(TaskCancelled):
                await many[0].aresult(timeout=1)
            assert await app.acancel(many[1].id, "bulk") is S.CANCELLED

            failing = await job.adelay(5)
            assert failing.queue == "async-q"
            await asyncio.to_thread(finish, app, failing, "failed")
            with pytest.raises(TaskFailed):
                await failing.aresult(timeout=1)
            assert (await job.aenqueue([6], priority=0)).created

            before = snapshot(r)
            with pytest.raises(InvalidPriority):
                await app.aenqueue("j", priority=10, queue="never")
            with pytest.raises(InvalidQueueName):
                await app.aenqueue_many([app.request("j"), app.request("j", queue="a b")])
            assert snapshot(r) == before
        finally:
            await app.aclose()

    asyncio.run(main())
    assert r.smembers(queues_key()) == {b"default", b"bulk", b"async-q"}


# --------------------------------------------------------------- bad input


BAD_ENQUEUES = [
    ({"args": [{1, 2}]}, NotSerializable),
    ({"args": [object()]}, NotSerializable),
    ({"kwargs": {"blob": b"\x00"}}, NotSerializable),
    ({"kwargs": {"n": 2**70}}, NotSerializable),
    ({"kwargs": {1: "non-str key"}}, NotSerializable),
    ({"args": 5}, ValidationError),
    ({"args": "abc"}, ValidationError),
    ({"kwargs": [("a", 1)]}, ValidationError),
    ({"priority": 10}, InvalidPriority),
    ({"priority": -1}, InvalidPriority),
    ({"priority": True}, InvalidPriority),
    ({"priority": "1"}, InvalidPriority),
    ({"priority": 2.0}, InvalidPriority),
    ({"queue": ""}, InvalidQueueName),
    ({"queue": "x" * 65}, InvalidQueueName),
    ({"queue": "a b"}, InvalidQueueName),
    ({"queue": "a{b}"}, InvalidQueueName),
    ({"queue": 5}, InvalidQueueName),
    ({"queue": ["a"]}, InvalidQueueName),
    ({"queue": b"default"}, InvalidQueueName),
    ({"prio": 1}, TypeError),  # an unknown option: TypeError naming it (EnqueueOptions)
    ({"retries": 1, "countdown": 5}, TypeError),
    ({"key": ""}, ValidationError),
    ({"key": "k" * 257}, ValidationError),
    ({"key": 5}, ValidationError),
    ({"max_retries": -1}, ValidationError),
    ({"max_retries": 1001}, ValidationError),
    ({"max_retries": True}, ValidationError),
    ({"max_retries": "3"}, ValidationError),
    ({"timeout": -1}, ValidationError),
    ({"timeout": "30"}, ValidationError),
    ({"delay": -0.5}, ValidationError),
    ({"delay": "5"}, ValidationError),
    ({"delay": True}, ValidationError),
    ({"delay": float("nan")}, ValidationError),
    ({"delay": float("inf")}, ValidationError),
    ({"timeout": float("nan")}, ValidationError),
    ({"timeout": 1e300}, ValidationError),
]


@pytest.mark.parametrize(("options", "exc_type"), BAD_ENQUEUES, ids=[repr(o)[:40] for o, _ in BAD_ENQUEUES])
def test_bad_enqueue_raises_and_writes_nothing(app, r, options, exc_type):
    app.enqueue("tests.jobs:job", key="existing")
    before = snapshot(r)
    with pytest.raises(exc_type) as info:
        app.enqueue("tests.jobs:job", **options)
    if exc_type is TypeError:
        assert "unexpected keyword argument" in str(info.value)
    else:
        assert isinstance(info.value, ValidationError)
    assert snapshot(r) == before


@pytest.mark.parametrize("name", ["", "x" * 257, 5, None])
def test_bad_task_name_raises_and_writes_nothing(app, r, name):
    before = snapshot(r)
    with pytest.raises(ValidationError, match="task name"):
        app.enqueue(name)
    assert snapshot(r) == before


def test_one_bad_request_in_a_batch_writes_nothing(app, r):
    app.enqueue("tests.jobs:job")
    before = snapshot(r)
    requests = [app.request("j", [i], queue=f"q{i % 3}") for i in range(2500)]
    requests[2400] = app.request("j", [{1}], queue="q0")
    with pytest.raises(NotSerializable):
        app.enqueue_many(requests)
    assert snapshot(r) == before


def test_unknown_request_option_raises_at_once(app):
    with pytest.raises(TypeError, match="priorty"):
        app.request("j", priorty=1)  # type: ignore[call-arg]


def test_every_enqueue_shortcut_names_an_unknown_option_and_writes_nothing(app, r):
    """The options are one TypedDict (PEP 692 Unpack): mypy rejects a typo, and a dynamic
    caller's unknown option still gets a TypeError naming it and listing the real ones."""

    @app.task(queue="tf")
    def job(x: int) -> None: ...

    app.enqueue("j")
    before = snapshot(r)
    calls = [
        lambda: app.enqueue("j", **{"countdown": 5}),
        lambda: app.request("j", **{"queue": "q", "prio": 1}),
        lambda: job.enqueue([1], **{"retries": 3}),
        lambda: job.request([1], **{"unique": "u"}),
        lambda: asyncio.run(app.aenqueue("j", **{"eta": 1})),
        lambda: asyncio.run(job.aenqueue([1], **{"ttl": 1})),
    ]
    for call, unknown in zip(calls, ["countdown", "prio", "retries", "unique", "eta", "ttl"], strict=True):
        with pytest.raises(TypeError, match=f"unexpected keyword argument '{unknown}'; the options are: queue, "):
            call()
    assert snapshot(r) == before


def test_enqueue_options_are_the_task_request_fields(app):
    """EnqueueOptions and TaskRequest list the same options in the same order, and every
    shortcut passes each one through."""
    assert list(EnqueueOptions.__annotations__) == list(TaskRequest._fields[3:])

    @app.task
    def job(x: int) -> None: ...

    given: EnqueueOptions = {
        "queue": "q", "priority": 1, "delay": 2.0, "key": "k", "max_retries": 3, "timeout": 4.0, "unique_key": "u",
    }
    expected = TaskRequest(job.name, (1,), None, *given.values())
    assert job.request([1], **given) == expected
    assert app.request(job.name, [1], **given) == expected
    assert app.request(job.name) == TaskRequest(job.name)


def test_payload_over_the_client_limit(backend, r):
    app = Orchestrator(settings=Settings(redis_url=backend.url, max_payload_bytes=100))
    try:
        before = snapshot(r)
        with pytest.raises(PayloadTooLarge, match="over the limit of 100"):
            app.enqueue("j", ["x" * 100])
        with pytest.raises(PayloadTooLarge):
            app.enqueue("j", kwargs={"k": "x" * 60}, args=["y" * 40])
        assert snapshot(r) == before
        exact = ["x" * (100 - len(b'[""]') - len(b"{}"))]
        assert app.enqueue("j", exact).info().args == exact
    finally:
        app.close()


def test_payload_over_the_script_limit(app, r):
    """The script checks the size again, for callers that bypass the client's check."""
    app.enqueue("j")
    big = TaskSpec(
        id="big", name="j", priority=5, args=orjson.dumps(["x" * 5000]), kwargs=b"{}", max_retries=0,
        timeout_ms=0, backoff_ms=0, backoff_max_ms=0, jitter=False, delay_ms=0,
    )
    before = snapshot(r)
    with pytest.raises(PayloadTooLarge):
        run(r, app._scripts("default").enqueue([big], max_payload=4096))
    assert snapshot(r) == before


@pytest.mark.parametrize(
    ("options", "exc_type"),
    [
        ({"retries": 3}, TypeError),  # explicit keyword parameters: mypy sees the typo too
        ({"queue": "x", "prority": 1}, TypeError),
        ({"max_retries": -1}, ConfigurationError),
        ({"backoff": -1}, ConfigurationError),
        ({"queue": "a b"}, InvalidQueueName),
        ({"priority": 10}, InvalidPriority),
    ],
)
def test_bad_task_options_raise_at_registration(app, r, options, exc_type):
    before = snapshot(r)
    with pytest.raises(exc_type):

        @app.task(**options)
        def job() -> None: ...

    assert app.registry == {}
    assert snapshot(r) == before


def test_unknown_orchestrator_option(backend):
    with pytest.raises(TypeError, match="redis_uri"):
        Orchestrator(redis_uri=backend.url)


def test_orchestrator_reads_the_url_from_the_environment(monkeypatch, backend):
    monkeypatch.setenv(REDIS_URL_ENV, backend.url)
    app = Orchestrator()
    try:
        assert app.settings.redis_url == backend.url
        assert app.redis.ping()
    finally:
        app.close()
    explicit = Orchestrator("redis://127.0.0.1:1/0")  # not connected: connections are lazy
    assert explicit.settings.redis_url == "redis://127.0.0.1:1/0"
