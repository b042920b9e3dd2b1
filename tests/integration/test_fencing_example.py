"""examples/fencing.py: a stale attempt's write is refused, a newer attempt's lands.

The task body runs under hand-made task contexts (two attempts of one task, in either
order and racing in threads), under the tokens of a real claim / reap / claim on the
tests' redis-server, and in a real ``orch worker`` of each pool.
"""

from __future__ import annotations

import contextvars
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from examples.fencing import StaleAttempt, connect, read, set_balance
from orchestrator import LeaseLost, Orchestrator, TaskState
from orchestrator.context import TaskContext, _current
from orchestrator.redis_local import LocalRedis
from orchestrator.script_calls import run
from orchestrator.transitions import Lease, Transitions
from tests.integration.procs import ROOT, Procs

EXAMPLE = ROOT / "examples" / "fencing.py"


def attempt(token: str, attempt: int = 1, task_id: str = "t1") -> TaskContext:
    return TaskContext(task_id, "default", set_balance.name, attempt, token, f"worker-{attempt}")


def run_as(ctx: TaskContext, db: Path, account: str, amount: int) -> int:
    """Call the task body as the worker does: with ``ctx`` as its current task."""
    context = contextvars.copy_context()
    context.run(_current.set, ctx)
    return context.run(set_balance, str(db), account, amount)


def row(db: Path, account: str = "alice") -> tuple[int, int] | None:
    conn = connect(str(db))
    try:
        return read(conn, account)
    finally:
        conn.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "bank.db"


# ------------------------------------------------------------ hand-made attempts


def test_a_stale_attempt_cannot_overwrite_a_newer_one(db: Path) -> None:
    assert run_as(attempt("9", 2), db, "alice", 100) == 9
    with pytest.raises(StaleAttempt, match="written with token 9, this attempt holds 7"):
        run_as(attempt("7", 1), db, "alice", 50)  # the zombie wakes up
    assert row(db) == (100, 9)


def test_a_newer_attempt_overwrites_a_stale_ones_write(db: Path) -> None:
    run_as(attempt("7", 1), db, "alice", 50)  # the stale attempt wrote before it was reaped
    run_as(attempt("9", 2), db, "alice", 100)
    assert row(db) == (100, 9)


def test_an_attempt_may_write_its_row_again(db: Path) -> None:
    run_as(attempt("9"), db, "alice", 100)
    run_as(attempt("9"), db, "alice", 120)
    assert row(db) == (120, 9)


def test_tokens_compare_as_numbers_not_strings(db: Path) -> None:
    run_as(attempt("9", 1), db, "alice", 50)
    run_as(attempt("10", 2), db, "alice", 100)  # "10" < "9" as strings
    with pytest.raises(StaleAttempt):
        run_as(attempt("9", 1), db, "alice", 60)
    assert row(db) == (100, 10)


def test_racing_attempts_always_leave_the_newer_write(db: Path) -> None:
    rounds = 20
    outcomes: list[tuple[str, str]] = []
    lock = threading.Lock()

    def one(account: str, ctx: TaskContext, amount: int, barrier: threading.Barrier) -> None:
        barrier.wait(timeout=10)
        try:
            run_as(ctx, db, account, amount)
            result = "wrote"
        except StaleAttempt:
            result = "refused"
        with lock:
            outcomes.append((ctx.token, result))

    with ThreadPoolExecutor(2) as pool:
        for i in range(rounds):
            barrier = threading.Barrier(2)
            account = f"acct-{i}"
            futures = [
                pool.submit(one, account, attempt("7", 1, f"t{i}"), 50, barrier),
                pool.submit(one, account, attempt("9", 2, f"t{i}"), 100, barrier),
            ]
            for future in futures:
                future.result(timeout=10)
    conn = connect(str(db))
    try:
        assert {read(conn, f"acct-{i}") for i in range(rounds)} == {(100, 9)}
    finally:
        conn.close()
    assert ("9", "refused") not in outcomes, "the newer attempt is never refused"


def test_outside_a_worker_the_task_refuses_to_write(db: Path) -> None:
    with pytest.raises(RuntimeError, match="run it in an orch worker"):
        set_balance(str(db), "alice", 1)
    assert not db.exists() or row(db) is None


# ---------------------------------------------------------- real lease tokens


def context_of(lease: Lease, worker: str) -> TaskContext:
    return TaskContext(lease.task_id, lease.queue, lease.name, lease.attempt, lease.token, worker)


def test_real_tokens_fence_a_reaped_attempt(app: Orchestrator, db: Path) -> None:
    """Attempt 1's lease expires, the reaper retries the task and attempt 2 claims it:
    attempt 1, still running, can neither write the row nor complete the task."""
    handle = app.enqueue(set_balance.name, [str(db), "alice", 100], max_retries=1)
    keys = app.keys("default")
    now = Transitions(keys)
    past_lease = Transitions(keys, clock_offset_ms=60_000)
    past_backoff = Transitions(keys, clock_offset_ms=120_000)
    [first] = run(app.redis, now.claim("w1", 1, 30_000))
    [(reaped, _, state)] = [(t.task_id, t.worker, t.state) for t in run(app.redis, past_lease.reap(10)).tasks]
    assert (reaped, state) == (handle.id, TaskState.RETRYING)
    assert run(app.redis, past_backoff.promote(10)).moved == 1
    [second] = run(app.redis, past_backoff.claim("w2", 1, 30_000))
    assert (second.task_id, second.attempt) == (handle.id, 2)
    assert int(second.token) > int(first.token)

    token = run_as(context_of(second, "w2"), db, "alice", 100)
    with pytest.raises(StaleAttempt):
        run_as(context_of(first, "w1"), db, "alice", 50)
    with pytest.raises(LeaseLost):
        run(app.redis, now.complete(handle.id, first.token, b"0", 0))
    run(app.redis, now.complete(handle.id, second.token, str(token).encode(), 0))
    assert handle.result(timeout=1) == int(second.token)
    assert row(db) == (100, int(second.token))


# ------------------------------------------------------------- a real worker


@pytest.fixture
def procs(app: Orchestrator, redis_server: LocalRedis, tmp_path: Path) -> Iterator[Procs]:
    with Procs(redis_server.url, tmp_path) as started:
        yield started


@pytest.mark.parametrize(
    "pool",
    ["thread", "asyncio", "process"],
)
def test_the_task_fences_with_its_own_token_in_a_worker(app: Orchestrator, procs: Procs, db: Path,
                                                       pool: str) -> None:
    worker = procs.worker("w1", pool=pool, apps=["examples.fencing"])
    handle = app.enqueue(set_balance.name, [str(db), "alice", 100], max_retries=0)
    token = handle.result(timeout=15)
    assert token == int(handle.info().token or 0) > 0
    assert row(db) == (100, token)
    assert worker.returncode is None


def test_the_demonstration_runs() -> None:
    done = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "attempt 1 (token 7) refused" in done.stdout
    assert "(100, 9)" in done.stdout
