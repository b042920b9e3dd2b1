"""The two idempotency keys, end to end on a real redis-server.

``key=`` names its task for as long as the task's record exists: a producer that resends
after a lost reply gets the first task back even when it already finished (the work runs
once). ``unique_key=`` names its task only while it is unfinished ("not twice at the
same time"). Task states are driven with transitions calls, as a worker would.
"""

from __future__ import annotations

import threading
import time

import orjson
import pytest
from click.testing import CliRunner

from orchestrator import Orchestrator, Settings, TaskHandle, TaskState, ValidationError
from orchestrator.cli import orch
from orchestrator.script_calls import run
from tests.lua.test_enqueue import ERROR, finish, task_keys
from tests.redis_server import snapshot

S = TaskState
FINISHES = ["success", "failed", "cancelled", "cancelled-while-waiting"]


def end(app: Orchestrator, handle: TaskHandle, how: str) -> None:
    if how == "cancelled-while-waiting":
        assert handle.cancel() is S.CANCELLED
    else:
        finish(app, handle, how)
    assert handle.status().is_final


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


# ----------------------------------------------------------------------- key=


def assert_same_expiry(r, key: str, record: str) -> None:
    """Both expire at the same millisecond: retire sets both with PEXPIREAT at one absolute
    time (two relative PEXPIREs could land a millisecond apart on Redis 7.0, which reads
    its clock for each one; 7.2 freezes it for a script)."""
    key_at, record_at = r.pexpiretime(key), r.pexpiretime(record)
    assert record_at > 0 and key_at == record_at, (key_at, record_at)


@pytest.mark.parametrize("option", ["key", "unique_key"])
def test_concurrent_enqueues_with_one_key_make_one_task(app, r, backend, option):
    n = 50
    barrier = threading.Barrier(n)
    handles: list[TaskHandle | None] = [None] * n
    errors: list[BaseException] = []

    def producer(i: int) -> None:
        mine = Orchestrator(settings=Settings(redis_url=backend.url))
        try:
            barrier.wait(timeout=10)
            handles[i] = mine.enqueue("billing:charge", [i], **{option: "invoice-42"})
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)
        finally:
            mine.close()

    threads = [threading.Thread(target=producer, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    ids = {h.id for h in handles}
    assert len(ids) == 1
    assert sum(h.created for h in handles) == 1
    [task_id] = ids
    assert task_keys(r) == [app.keys("default").task(task_id).encode()]
    entry = app.keys("default").idempotency if option == "key" else app.keys("default").unique
    assert r.get(entry("invoice-42")) == task_id.encode()
    assert r.hget(app.keys("default").stats, "enqueued") == b"1"


@pytest.mark.parametrize("how", FINISHES)
def test_key_returns_its_task_after_it_ended_while_the_record_is_kept(app, r, how):
    first = app.enqueue("billing:charge", key="k")
    end(app, first, how)
    again = app.enqueue("billing:charge", key="k")
    assert (again.id, again.created) == (first.id, False)
    assert task_keys(r) == [app.keys("default").task(first.id).encode()]
    assert not r.exists(app.keys("default").unique("k"))  # key= never writes a unique entry


def test_a_producer_resending_after_a_lost_reply_gets_the_finished_task_and_the_work_runs_once(app, r):
    """The producer's first enqueue landed but its reply was lost; the task ran and
    succeeded; the producer retries with the same key: it gets that task and its result."""
    sent = app.enqueue("billing:charge", [42], key="invoice-42")  # the reply the producer never saw
    finish(app, sent, "success", {"charged": 42})
    retry = app.enqueue("billing:charge", [42], key="invoice-42")
    assert (retry.id, retry.created) == (sent.id, False)
    assert retry.result(timeout=1) == {"charged": 42}
    assert run(r, app._scripts("default").claim("w1", 10, 60_000)) == []  # nothing new to run
    stats = r.hgetall(app.keys("default").stats)
    assert (stats[b"enqueued"], stats[b"started"], stats[b"succeeded"]) == (b"1", b"1", b"1")


@pytest.mark.parametrize("ttl_ms", [60_000, 50])
def test_key_entry_expires_with_the_record(app, r, ttl_ms):
    keys = app.keys("default")
    first = app.enqueue("billing:charge", key="k")
    t = app._scripts("default")
    [lease] = run(r, t.claim("w1", 1, 60_000))
    assert r.pttl(keys.idempotency("k")) == -1  # no expiry while the task lives
    run(r, t.complete(first.id, lease.token, b"1", ttl_ms))
    if ttl_ms > 1000:  # the same expiry time: set by one script
        assert_same_expiry(r, keys.idempotency("k"), keys.task(first.id))
        assert app.enqueue("billing:charge", key="k").id == first.id  # kept: still the same task
        return
    wait_until(lambda: not r.exists(keys.task(first.id)) and not r.exists(keys.idempotency("k")))
    fresh = app.enqueue("billing:charge", key="k")
    assert fresh.created and fresh.id != first.id
    assert r.get(keys.idempotency("k")) == fresh.id.encode() and r.pttl(keys.idempotency("k")) == -1


@pytest.mark.parametrize("how", ["cancelled-while-waiting", "cancelled"])
def test_a_cancelled_task_with_a_retention_gives_its_key_entry_the_same(app, r, how):
    keys = app.keys("default")
    first = app.enqueue("billing:charge", key="k")
    t = app._scripts("default")
    if how == "cancelled-while-waiting":
        run(r, t.cancel(first.id, 60_000))
    else:
        [lease] = run(r, t.claim("w1", 1, 60_000))
        run(r, t.cancel(first.id, 60_000))
        run(r, t.fail(first.id, lease.token, orjson.dumps(ERROR), mode="cancelled", ttl_ms=60_000))
    assert first.status() is S.CANCELLED
    assert_same_expiry(r, keys.idempotency("k"), keys.task(first.id))


def test_a_failed_task_keeps_its_key_through_retry_and_after(app, r):
    first = app.enqueue("billing:charge", key="k")
    finish(app, first, "failed")
    assert app.enqueue("billing:charge", key="k").id == first.id  # in the dead-letter: still its task
    assert r.pttl(app.keys("default").idempotency("k")) == -1
    assert run(r, app._scripts("default").retry_failed([first.id])) == [first.id]  # orch retry
    again = app.enqueue("billing:charge", key="k")
    assert (again.id, again.created, again.status()) == (first.id, False, S.PENDING)
    finish(app, first, "success")
    assert app.enqueue("billing:charge", key="k").id == first.id
    assert task_keys(r) == [app.keys("default").task(first.id).encode()]


def test_retry_takes_back_a_key_entry_that_was_lost(app, r):
    first = app.enqueue("billing:charge", key="k")
    finish(app, first, "failed")
    r.delete(app.keys("default").idempotency("k"))  # deleted by hand
    run(r, app._scripts("default").retry_failed([first.id]))
    assert r.get(app.keys("default").idempotency("k")) == first.id.encode()


@pytest.mark.parametrize("index", ["pending", "failed", "done"])
def test_purging_the_record_frees_the_key(app, r, index):
    keys = app.keys("default")
    first = app.enqueue("billing:charge", key="k", unique_key="u")
    if index != "pending":
        finish(app, first, "failed" if index == "failed" else "success")
    assert run(r, app._scripts("default").purge(getattr(keys, index), 10)) == 1
    assert not r.exists(keys.idempotency("k")) and not r.exists(keys.unique("u"))
    fresh = app.enqueue("billing:charge", key="k")
    assert fresh.created and fresh.id != first.id


def test_a_key_entry_naming_a_record_that_is_gone_is_taken_over(app, r):
    first = app.enqueue("billing:charge", key="k")
    r.delete(app.keys("default").task(first.id))  # as if it expired a moment before its entry
    fresh = app.enqueue("billing:charge", key="k")
    assert fresh.created and fresh.id != first.id
    assert r.get(app.keys("default").idempotency("k")) == fresh.id.encode()


# ---------------------------------------------------------------- unique_key=


@pytest.mark.parametrize("how", FINISHES)
def test_unique_key_is_free_again_once_the_task_is_final(app, r, how):
    first = app.enqueue("billing:charge", unique_key="u")
    again = app.enqueue("billing:charge", unique_key="u")
    assert (again.id, again.created) == (first.id, False)
    end(app, first, how)
    assert not r.exists(app.keys("default").unique("u"))
    fresh = app.enqueue("billing:charge", unique_key="u")
    assert fresh.created and fresh.id != first.id
    assert r.get(app.keys("default").unique("u")) == fresh.id.encode()
    assert not r.exists(app.keys("default").idempotency("u"))  # unique_key= never writes a key entry


def test_unique_key_holds_while_the_task_runs_or_retries(app):
    first = app.enqueue("billing:charge", unique_key="u", max_retries=2)
    t = app._scripts("default")
    [lease] = run(app.redis, t.claim("w1", 1, 60_000))
    assert app.enqueue("billing:charge", unique_key="u").id == first.id
    run(app.redis, t.fail(first.id, lease.token, orjson.dumps(ERROR)))
    assert first.status() is S.RETRYING
    assert app.enqueue("billing:charge", unique_key="u").id == first.id


def test_key_and_unique_key_are_separate_namespaces_and_per_queue(app):
    a = app.enqueue("billing:charge", key="same")
    b = app.enqueue("billing:charge", unique_key="same")
    c = app.enqueue("billing:charge", key="same", queue="other")
    assert len({a.id, b.id, c.id}) == 3 and a.created and b.created and c.created


def test_key_is_looked_at_before_unique_key(app):
    first = app.enqueue("billing:charge", key="k", unique_key="u")
    finish(app, first, "success")
    again = app.enqueue("billing:charge", key="k", unique_key="u")  # the unique key is free, the key is not
    assert (again.id, again.created) == (first.id, False)
    other = app.enqueue("billing:charge", key="k2", unique_key="u")
    assert other.created and other.id != first.id


def test_both_options_reach_the_record_and_every_enqueue_path(app):
    @app.task
    def charge(n: int) -> int:
        return n

    handles = [
        charge.enqueue([1], key="k1", unique_key="u1"),
        app.enqueue(charge.name, [1], key="k1"),
        *app.enqueue_many([charge.request([2], unique_key="u2"), app.request(charge.name, [2], unique_key="u2")]),
    ]
    assert [h.created for h in handles] == [True, False, True, False]
    task = handles[0].info()
    assert (task.key, task.unique_key) == ("k1", "u1")
    assert handles[2].info().key is None


@pytest.mark.parametrize("value", ["", "k" * 257, 5])
def test_a_bad_unique_key_is_refused_before_anything_is_written(app, r, value):
    before = snapshot(r)
    with pytest.raises(ValidationError, match="unique_key") as info:
        app.enqueue("billing:charge", unique_key=value)
    assert info.value.field == "unique_key"
    assert snapshot(r) == before


def test_orch_enqueue_takes_both_options(app, backend):
    runner = CliRunner()
    env = {"ORCH_REDIS_URL": backend.url, "ORCH_PREFIX": None}

    def enqueue(*options: str) -> str:
        result = runner.invoke(orch, ["enqueue", "billing:charge", *options], env=env)
        assert result.exit_code == 0, result.output
        return result.output.strip()

    first = enqueue("--key", "k")
    assert enqueue("--key", "k") == f"{first} (existing task)"
    unique = enqueue("--unique-key", "u")
    assert enqueue("--unique-key", "u") == f"{unique} (existing task)"
    assert app.get_task(first).key == "k" and app.get_task(unique).unique_key == "u"
