"""What a finished record tells about its attempts: a SUCCESS shows no error (an earlier
attempt's error is kept as ``last_error``), and a FAILED record names the worker that ran
its last attempt. Driven with the scripts on a real redis-server (``Q`` checks the
lifecycle after every call).
"""

from __future__ import annotations

import json

import orjson
import pytest
from click.testing import CliRunner

from orchestrator.cli import orch
from orchestrator.models import TaskState
from orchestrator.script_calls import run
from orchestrator.transitions import Transitions
from tests.lua.test_scripts import ERROR, Q

S = TaskState


@pytest.fixture
def q(r) -> Q:
    return Q(r)


def field(q: Q, task_id: str, name: str) -> bytes | None:
    return q.r.hget(q.keys.task(task_id), name)


def test_a_success_after_a_failed_attempt_shows_no_error_and_keeps_it_as_last_error(q):
    [task_id] = q.add(max_retries=2, backoff_ms=0)
    [lease] = q.claim()
    q.run(q.at().fail(task_id, lease.token, ERROR))
    assert q.task(task_id).error is not None  # retrying: the error it retries after is shown
    q.run(q.at(1).promote(10))
    [lease] = q.claim(worker="w2")
    q.run(q.at().complete(task_id, lease.token, b'"ok"', 0))
    task = q.task(task_id)
    assert (task.state, task.result, task.error) == (S.SUCCESS, "ok", None)
    assert task.last_error is not None and task.last_error.model_dump() == orjson.loads(ERROR)
    assert field(q, task_id, "error") == b""  # blanked, as scripts blank fields


def test_a_success_at_the_first_attempt_has_neither(q):
    [task_id] = q.add()
    [lease] = q.claim()
    q.run(q.at().complete(task_id, lease.token, b"1", 0))
    assert field(q, task_id, "error") is None and field(q, task_id, "last_error") is None
    assert q.task(task_id).last_error is None


@pytest.mark.parametrize("how", ["fatal", "retries exhausted", "reaped"])
def test_a_failed_record_names_the_worker_that_ran_it(q, how):
    [task_id] = q.add(max_retries=0)
    [lease] = q.claim(worker="w7", lease_ms=1000)
    if how == "reaped":
        q.run(q.at(5000).reap(10))
    else:
        q.run(q.at().fail(task_id, lease.token, ERROR, mode="fatal" if how == "fatal" else "retry"))
    task = q.task(task_id)
    assert (task.state, task.worker) == (S.FAILED, "w7")


def test_a_retried_record_names_no_worker_until_it_runs_again(q):
    task_id = q.fail_to_dead_letter()
    assert q.task(task_id).worker == "w1"
    q.run(q.at().retry_failed([task_id]))
    assert q.task(task_id).worker is None
    assert [x.task_id for x in q.claim(worker="w2")] == [task_id]
    assert q.task(task_id).worker == "w2"


def test_the_operator_api_and_orch_inspect_show_the_history(app, backend):
    handle = app.enqueue("tests.jobs:job", unique_key="u", max_retries=1)
    t = app._scripts("default")
    [lease] = run(app.redis, t.claim("w1", 1, 60_000))
    run(app.redis, t.fail(handle.id, lease.token, ERROR))
    run(app.redis, Transitions(app.keys("default"), clock_offset_ms=3_600_000).promote(10))  # an hour later
    [lease] = run(app.redis, t.claim("w2", 1, 60_000))
    run(app.redis, t.complete(handle.id, lease.token, b"1", 0))
    info = app.task_info(handle.id)
    assert (info.error, info.unique_key, info.last_error["message"]) == (None, "u", "boom")
    result = CliRunner().invoke(orch, ["inspect", handle.id, "--json"], env={"ORCH_REDIS_URL": backend.url})
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert (shown["error"], shown["unique_key"], shown["last_error"]["type"]) == (None, "u", "ValueError")


# JSON that decodes but that cjson cannot encode back (1e999 reads as inf): each script that
# ends an attempt still ends it (after its first write a failing script would leave the task
# in no index: Q.run checks), and a history it appends to ends with the attempt.
@pytest.mark.parametrize("garbage", ["[1e999]", '[{"worker":"w","error":-1e400}]', '[[1e999]]'])
@pytest.mark.parametrize("how", ["complete", "fail", "reap", "release"])
def test_a_history_cjson_cannot_encode_fails_alone_never_the_script(q, garbage, how):
    [task_id] = q.add(max_retries=1)
    [lease] = q.claim(worker="w1", lease_ms=1000)
    q.r.hset(q.keys.task(task_id), "history", garbage)
    if how == "complete":
        q.run(q.at().complete(task_id, lease.token, b"1", 0))
        assert q.r.hget(q.keys.task(task_id), "state") == b"SUCCESS"
        return
    if how == "fail":
        q.run(q.at().fail(task_id, lease.token, ERROR))
    elif how == "reap":
        q.run(q.at(5000).reap(10))
    else:
        q.run(q.at().release([(task_id, lease.token)]))
    raw = field(q, task_id, "history") or b""  # (the garbage may be kept as text: the last attempt reads)
    last = orjson.loads(raw[raw.rfind(b'{"worker":'):-1])
    assert raw.endswith(b"}]") and last["worker"] == "w1"
    assert last["outcome"] == ("released" if how == "release" else "retried")
