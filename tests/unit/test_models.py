"""The pure core: the state table, Task records, RetryPolicy, key layout, error mapping, public API."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import orjson
import pydantic
import pytest

import orchestrator
from orchestrator import errors
from orchestrator.keys import DEFAULT_PREFIX, QueueKeys, queues_key, validate_queue_name
from orchestrator.models import (
    FINAL_STATES,
    TRANSITIONS,
    RetryPolicy,
    Task,
    TaskError,
    TaskState,
    can_transition,
    dumps,
    loads,
)
from orchestrator.transitions import TaskSpec, Transitions

S = TaskState

# ----------------------------------------------------------------- public API


def test_public_api_is_pinned():
    assert orchestrator.__all__ == [
        "Attempt",
        "ConfigurationError",
        "Event",
        "FailNow",
        "InvalidPayload",
        "InvalidPriority",
        "InvalidQueueName",
        "InvalidSchedule",
        "InvalidTransition",
        "LeaseLost",
        "MalformedRecord",
        "NotReplicated",
        "NotSerializable",
        "Orchestrator",
        "OrchestratorError",
        "OutOfMemory",
        "PartiallyEnqueued",
        "PayloadTooLarge",
        "Progress",
        "Queue",
        "QueueNotFound",
        "QueueStats",
        "RedisCommandError",
        "RedisUnavailable",
        "ResultTimeout",
        "RetryPolicy",
        "ScheduleNotFound",
        "SchedulerSettings",
        "Settings",
        "ShardingRefused",
        "Task",
        "TaskCancelled",
        "TaskContext",
        "TaskError",
        "TaskFailed",
        "TaskFunction",
        "TaskHandle",
        "TaskInfo",
        "TaskNotFound",
        "TaskOptions",
        "TaskPage",
        "TaskRequest",
        "TaskState",
        "UnknownTask",
        "ValidationError",
        "WorkerInfo",
        "WorkerSettings",
        "__version__",
        "current_task",
    ]


def test_every_public_name_exists():
    for name in orchestrator.__all__:
        assert hasattr(orchestrator, name), name


# --------------------------------------------------------------- state table


def test_transition_table_covers_every_state():
    assert set(TRANSITIONS) == set(TaskState)


def test_transition_table_is_the_documented_lifecycle():
    assert {(old, new) for old, targets in TRANSITIONS.items() for new in targets} == {
        (S.SCHEDULED, S.PENDING),
        (S.SCHEDULED, S.CANCELLED),
        (S.PENDING, S.RUNNING),
        (S.PENDING, S.CANCELLED),
        (S.RUNNING, S.SUCCESS),
        (S.RUNNING, S.RETRYING),
        (S.RUNNING, S.FAILED),
        (S.RUNNING, S.PENDING),
        (S.RUNNING, S.CANCELLED),
        (S.RETRYING, S.PENDING),
        (S.RETRYING, S.CANCELLED),
        (S.FAILED, S.PENDING),
    }


def test_no_state_moves_to_itself():
    for state in TaskState:
        assert not can_transition(state, state)


def test_final_states():
    assert {s for s in TaskState if s.is_final} == {S.SUCCESS, S.FAILED, S.CANCELLED} == FINAL_STATES
    assert TRANSITIONS[S.SUCCESS] == TRANSITIONS[S.CANCELLED] == frozenset()
    assert TRANSITIONS[S.FAILED] == {S.PENDING}  # only `orch retry` revives a dead letter


def test_only_running_finishes():
    for state in TaskState:
        if state is not S.RUNNING:
            assert not can_transition(state, S.SUCCESS)
            assert not can_transition(state, S.RETRYING)


def test_states_are_their_names():
    for state in TaskState:
        assert state.value == state.name
        assert TaskState(state.name) is state


# --------------------------------------------------------------------- JSON


def test_dumps_and_loads_round_trip():
    value = {"a": [1, 2.5, None, True, "é"], "b": {}}
    assert loads(dumps(value)) == value
    assert loads(dumps(value).decode()) == value


@pytest.mark.parametrize("value", [{1, 2}, object(), b"bytes", 2**64, {"f": lambda: 1}])
def test_dumps_rejects_what_is_not_json(value):
    with pytest.raises(errors.NotSerializable) as info:
        dumps(value)
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, errors.ValidationError)


# --------------------------------------------------------------------- Task


def _record(**fields):
    base = {
        b"id": b"abc",
        b"name": b"pkg.mod:fn",
        b"queue": b"default",
        b"state": b"PENDING",
        b"priority": b"3",
        b"args": b'[1,"two"]',
        b"kwargs": b'{"x":{"y":[3]}}',
        b"attempts": b"0",
        b"max_retries": b"2",
        b"timeout_ms": b"30000",
        b"backoff_ms": b"1000",
        b"backoff_max_ms": b"300000",
        b"jitter": b"1",
        b"key": b"",
        b"created_at": b"1700000000000",
        b"run_at": b"1700000000000",
        b"score": b"30000000000001",
    }
    base.update({k.encode(): v.encode() if isinstance(v, str) else v for k, v in fields.items()})
    return base


def test_task_from_redis_bytes():
    task = Task.from_redis(_record())
    assert task.id == "abc"
    assert task.name == "pkg.mod:fn"
    assert task.state is S.PENDING
    assert task.priority == 3
    assert task.args == [1, "two"]
    assert task.kwargs == {"x": {"y": [3]}}
    assert (task.attempts, task.max_retries, task.timeout_ms) == (0, 2, 30000)
    assert (task.backoff_ms, task.backoff_max_ms, task.jitter) == (1000, 300000, True)
    assert task.created_at == task.run_at == 1700000000000
    assert task.started_at is None and task.completed_at is None
    assert task.worker is None and task.token is None and task.key is None
    assert task.cancel_requested is False
    assert task.result is None and task.error is None


def test_task_from_redis_str_fields_equal_bytes_fields():
    text = {k.decode(): v.decode() for k, v in _record().items()}
    assert Task.from_redis(text) == Task.from_redis(_record())


def test_task_from_redis_finished_record():
    error = {"type": "ValueError", "message": "boom", "traceback": "tb"}
    task = Task.from_redis(
        _record(
            state="FAILED",
            attempts="3",
            worker="w1",
            token="17",
            key="k",
            jitter="0",
            cancel_requested="1",
            started_at="1700000000100",
            completed_at="1700000000200",
            error=orjson.dumps(error).decode(),
        )
    )
    assert task.state is S.FAILED
    assert task.worker == "w1" and task.token == "17" and task.key == "k"
    assert task.jitter is False and task.cancel_requested is True
    assert (task.started_at, task.completed_at) == (1700000000100, 1700000000200)
    assert task.error == TaskError(**error)


def test_task_from_redis_results_that_are_falsy_json():
    assert Task.from_redis(_record(state="SUCCESS", result="0")).result == 0
    assert Task.from_redis(_record(state="SUCCESS", result="null")).result is None
    assert Task.from_redis(_record(state="SUCCESS", result='""')).result == ""
    assert Task.from_redis(_record(state="SUCCESS", result='{"a":[]}')).result == {"a": []}


def test_task_from_redis_blank_optional_fields_read_as_missing():
    # Scripts blank fields rather than delete them (worker on retry, completed_at on `orch retry`).
    task = Task.from_redis(_record(worker="", token="", completed_at="", started_at="", error=""))
    assert task.worker is None and task.token is None
    assert task.completed_at is None and task.started_at is None and task.error is None


def test_task_from_redis_ignores_unknown_fields_but_rejects_bad_state():
    assert Task.from_redis(_record(something_new="x")).id == "abc"
    with pytest.raises(errors.MalformedRecord, match="field state 'LOST' is not a task state"):
        Task.from_redis(_record(state="LOST"))


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"timeout_ms": "1e3"}, "field timeout_ms '1e3' is not an integer"),
        ({"attempts": " 1"}, "field attempts ' 1' is not an integer"),
        ({"attempts": "\u0663"}, "field attempts '\\xD9\\xA3' is not an integer"),  # an Arabic-Indic 3: int() reads it
        ({"priority": "12"}, "field priority '12' is not a priority (0-9)"),
        ({"jitter": "true"}, "field jitter 'true' is not 0 or 1"),
        ({"run_at": "-5"}, "field run_at '-5' is not an integer"),
        ({"name": b"\xff"}, "field name '\\xFF' is not UTF-8"),
        ({"args": '{"a": 1}'}, "field args has the wrong shape"),
    ],
)
def test_task_from_redis_refuses_a_value_that_does_not_read(fields, problem):
    with pytest.raises(errors.MalformedRecord) as info:
        Task.from_redis(_record(**fields))
    assert problem in str(info.value)


def test_task_from_redis_refuses_a_record_without_a_required_field():
    record = _record()
    del record[b"name"]
    with pytest.raises(errors.MalformedRecord, match="field name is missing"):
        Task.from_redis(record)


def test_task_from_redis_takes_the_id_and_queue_its_key_says():
    """#18: a record holds neither (its key does); one written before holds both, and a key's
    id or queue wins over what the record says (a hand-edited id cannot rename a task)."""
    plain = {k: v for k, v in _record().items() if k not in (b"id", b"queue")}
    task = Task.from_redis(plain, "k1", "q1")
    assert (task.id, task.queue, task.name) == ("k1", "q1", "pkg.mod:fn")
    assert (Task.from_redis(_record(), "k1", "q1").id, Task.from_redis(_record(), "k1", "q1").queue) == ("k1", "q1")
    assert (Task.from_redis(_record()).id, Task.from_redis(_record()).queue) == ("abc", "default")  # an old record
    with pytest.raises(errors.MalformedRecord, match="field id is missing; field queue is missing"):
        Task.from_redis(plain)  # neither the key's nor the record's
    assert Task.from_redis(_record(id=b"\xff"), "k1", "q1").id == "k1"  # an old field is not read when the key says


def test_task_from_redis_gives_an_absent_optional_field_its_default():
    keep = {b"id", b"name", b"queue", b"state"}
    task = Task.from_redis({k: v for k, v in _record().items() if k in keep})
    assert (task.priority, task.args, task.kwargs, task.attempts, task.jitter) == (5, [], {}, 0, True)


# --------------------------------------------------------------- RetryPolicy


def test_retry_policy_defaults():
    policy = RetryPolicy()
    assert (policy.max_retries, policy.backoff, policy.backoff_max, policy.jitter) == (3, 1.0, 300.0, True)


@pytest.mark.parametrize(
    "bad", [{"max_retries": -1}, {"max_retries": 1001}, {"backoff": -0.1}, {"backoff_max": -1}, {"retries": 3}]
)
def test_retry_policy_rejects(bad):
    with pytest.raises(pydantic.ValidationError):
        RetryPolicy(**bad)


def test_retry_policy_is_frozen():
    policy = RetryPolicy(max_retries=5)
    with pytest.raises(pydantic.ValidationError):
        policy.max_retries = 1  # type: ignore[misc]
    assert policy.model_copy(update={"max_retries": 1}).max_retries == 1
    assert policy.max_retries == 5


# ---------------------------------------------------------------------- keys


@pytest.mark.parametrize("name", ["default", "a", "A-b_c.d", "0", "x" * 64, "emails.high-prio_2"])
def test_valid_queue_names(name):
    assert validate_queue_name(name) == name
    assert QueueKeys(name).queue == name


@pytest.mark.parametrize(
    "name", ["", "x" * 65, "a b", "a{b}", "{a}", "a}", "a:b", "a/b", "é", "a\n", None, 5, b"default", ["a"]]
)
def test_invalid_queue_names(name):
    with pytest.raises(errors.InvalidQueueName) as info:
        validate_queue_name(name)
    assert isinstance(info.value, errors.ValidationError)
    with pytest.raises(errors.InvalidQueueName):
        QueueKeys(name)


def _all_queue_keys(k: QueueKeys) -> dict[str, str]:
    """Every key a QueueKeys forms, found by introspection so a new key cannot be missed."""
    found = {}
    for name, member in inspect.getmembers(type(k)):
        if name.startswith("_") or name == "queue":
            continue
        if isinstance(member, property):
            value = getattr(k, name)
        elif inspect.isfunction(member):
            value = getattr(k, name)("some-id")
        else:
            continue
        assert isinstance(value, str), name
        found[name] = value
    return found


def _hash_tag(key: str) -> str:
    """The part of a key Redis Cluster hashes (between the first '{' and the next '}')."""
    start = key.index("{")
    return key[start + 1 : key.index("}", start + 1)]


@pytest.mark.parametrize("prefix", [DEFAULT_PREFIX, "myapp"])
def test_every_queue_key_carries_the_queue_hash_tag(prefix):
    k = QueueKeys("emails", prefix)
    keys = _all_queue_keys(k)
    assert {"base", "task", "idempotency", "unique", "worker", "pending", "scheduled", "running", "failed", "done",
            "workers", "stats", "events", "wake"} <= set(keys)
    assert len(set(keys.values())) == len(keys)  # no two names collide
    for key in keys.values():
        assert key.startswith(f"{prefix}:{{emails}}:")
        assert _hash_tag(key) == "emails"


def test_key_names_are_readable():
    k = QueueKeys("default")
    assert k.base == "orch:{default}:"
    assert k.task("42") == "orch:{default}:task:42"
    assert k.idempotency("order-7") == "orch:{default}:key:order-7"
    assert k.unique("order-7") == "orch:{default}:unique:order-7"
    assert k.worker("host-1") == "orch:{default}:worker:host-1"
    assert k.pending == "orch:{default}:pending"
    assert k.running == "orch:{default}:running"


def test_queues_key_is_outside_any_hash_tag():
    assert queues_key() == "orch:queues"
    assert queues_key("myapp") == "myapp:queues"
    assert "{" not in queues_key()


def _spec(**over):
    fields = dict(
        id="t1", name="n", priority=5, args=b"[]", kwargs=b"{}", max_retries=0, timeout_ms=0,
        backoff_ms=0, backoff_max_ms=0, jitter=False, delay_ms=0,
    )
    fields.update(over)
    return TaskSpec(**fields)


def test_every_script_call_touches_one_hash_slot():
    k = QueueKeys("emails")
    t = Transitions(k)
    calls = [
        t.enqueue([_spec()], max_payload=100),
        t.claim("w", 1, 1000),
        t.heartbeat("w", 1000, {"host": "h"}, [("t1", "1")]),
        t.deregister("w"),
        t.complete("t1", "1", b"null", 0),
        t.fail("t1", "1", b"{}"),
        t.release([("t1", "1")]),
        t.promote(10),
        t.reap(10),
        t.cancel("t1", 0),
        t.retry_failed(["t1"]),
        t.pause(True),
        t.run_now("t1"),
        t.delete("t1"),
        *[t.purge(index, 10) for index in (k.pending, k.scheduled, k.failed, k.done)],
    ]
    seen = set()
    for call in calls:
        seen.add(call.script.name)
        assert call.keys, call.script.name
        for key in call.keys:
            assert _hash_tag(key) == "emails", (call.script.name, key)
        assert call.args[0] == k.base  # per-task keys are built from the base, in the tag
    assert seen == {"enqueue", "claim", "heartbeat", "complete", "fail", "release", "promote", "reap",
                    "cancel", "retry_failed", "purge", "pause", "run_now", "delete"}


def test_purge_refuses_the_running_index():
    k = QueueKeys("emails")
    with pytest.raises(ValueError, match="purge"):
        Transitions(k).purge(k.running, 10)


# -------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("code", "exc_type"),
    [
        ("NOT_FOUND", errors.TaskNotFound),
        ("LEASE_LOST", errors.LeaseLost),
        ("BAD_STATE", errors.InvalidTransition),
        ("INVALID", errors.ValidationError),
        ("TOO_LARGE", errors.PayloadTooLarge),
        ("CORRUPT", errors.CorruptQueue),
    ],
)
def test_script_error_codes_map_to_exceptions(code, exc_type):
    exc = errors.from_script_error(f"{code} abc123 RUNNING")
    assert type(exc) is exc_type
    assert str(exc) == "abc123 RUNNING"
    bare = errors.from_script_error(code)
    assert type(bare) is exc_type
    assert str(bare) == code


def test_every_error_code_a_script_emits_maps_to_an_exception():
    lua = "\n".join(path.read_text() for path in (Path(errors.__file__).parent / "lua").glob("*.lua"))
    emitted = set(re.findall(r"(?:error_reply\(|return )'([A-Z][A-Z_]+) ", lua))
    assert emitted >= {"NOT_FOUND", "LEASE_LOST", "BAD_STATE", "INVALID", "TOO_LARGE"}  # the reader finds them
    for code in sorted(emitted):
        exc = errors.from_script_error(f"{code} some detail")
        assert isinstance(exc, errors.OrchestratorError), f"scripts reply {code}, which maps to no exception"


@pytest.mark.parametrize(
    "message", ["ERR wrong number of arguments", "NOSCRIPT No matching script", "", "not_found x", "NOT_FOUNDx"]
)
def test_foreign_errors_are_not_mapped(message):
    assert errors.from_script_error(message) is None


def test_exception_tree():
    e = errors
    for name in dir(e):
        value = getattr(e, name)
        if isinstance(value, type) and issubclass(value, Exception) and value.__module__ == e.__name__:
            assert issubclass(value, e.OrchestratorError), name
    for sub in (e.InvalidQueueName, e.InvalidPriority, e.NotSerializable, e.PayloadTooLarge):
        assert issubclass(sub, e.ValidationError)
    assert issubclass(e.ValidationError, ValueError)
    assert issubclass(e.NotSerializable, TypeError)
    assert issubclass(e.TaskNotFound, LookupError)
    assert issubclass(e.UnknownTask, LookupError)
    assert issubclass(e.ResultTimeout, TimeoutError)
    assert issubclass(e.InvalidPayload, e.MalformedRecord)


def test_task_failed_carries_the_error_record():
    exc = errors.TaskFailed("t1", {"type": "KeyError", "message": "'x'", "traceback": "..."})
    assert exc.task_id == "t1"
    assert exc.error["type"] == "KeyError"
    assert str(exc) == "task t1 failed: KeyError: 'x'"
    assert errors.TaskFailed("t2", None).error == {}
