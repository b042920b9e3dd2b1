"""`orch worker` as users run it: real processes on the tests' private redis-server.

Timeouts in each pool, unknown task names, crashing process-pool children, graceful
shutdown on SIGTERM and the idle wake-up. Every wait has a deadline; the tasks come
from ``tests.integration.sample_tasks``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator import Orchestrator, TaskFailed, TaskHandle, TaskState
from orchestrator.redis_local import LocalRedis
from tests.integration.procs import Attempt, Proc, Procs, wait_for


@pytest.fixture
def procs(app: Orchestrator, redis_server: LocalRedis, tmp_path: Path) -> Iterator[Procs]:
    with Procs(redis_server.url, tmp_path) as started:
        yield started


def wait_final(procs: Procs, handle: TaskHandle, worker: Proc, timeout: float = 10.0) -> None:
    wait_for(lambda: handle.status().is_final, f"task {handle.id} to end", timeout, alive=[worker])


def pool_children(pid: int) -> set[int]:
    """The live process-pool children of a worker (Linux /proc; not the resource tracker)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except FileNotFoundError:
                continue
            if b"spawn_main" in cmdline:
                found.add(int(child))
    return found


# ------------------------------------------------------------------------ event loop


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_worker_runs_sync_and_async_tasks_on_either_event_loop(procs: Procs, app: Orchestrator, loop: str) -> None:
    worker = procs.worker("w1", loop=loop, concurrency=2)
    handles = [app.enqueue("tests:add", [1, 2]), app.enqueue("tests:asleep", [0.01])]
    for handle in handles:
        wait_final(procs, handle, worker)
    assert [h.status() for h in handles] == [TaskState.SUCCESS, TaskState.SUCCESS]
    assert handles[0].result() == 3
    assert f"loop {loop}" in worker.log()
    assert "tests:add -> queue default" in worker.log()  # the start-up list of tasks and their queues


# ------------------------------------------------------------------------- timeouts


@pytest.mark.parametrize(
    ("pool", "task", "concurrency"),
    [
        ("asyncio", "tests:asleep", 1),  # an async task, cancelled on the loop
        ("thread", "tests:sleep", 2),  # the thread cannot be stopped: a second slot runs the next task
        ("process", "tests:sleep", 1),  # the child is killed and replaced: the next task runs in the new one
    ],
)
def test_timeout_fails_the_task_fast_and_the_worker_goes_on(
    procs: Procs, app: Orchestrator, pool: str, task: str, concurrency: int
) -> None:
    worker = procs.worker("w1", pool=pool, concurrency=concurrency)
    children = pool_children(worker.pid) if pool == "process" else set()
    slow = app.enqueue(task, [30], timeout=0.3, max_retries=0)
    wait_final(procs, slow, worker)

    info = slow.info()
    assert info.state is TaskState.FAILED
    assert info.error is not None and info.error.type == "TaskTimeout", info.error
    assert info.attempts == 1
    assert info.started_at is not None and info.completed_at is not None
    assert info.completed_at - info.started_at < 15_000, "a 0.3 s timeout must end a 30 s task long before 30 s"
    if pool == "process":
        assert children, "the process pool should have started its child"
        assert not children & pool_children(worker.pid), "the timed-out child must be killed"

    follow = app.enqueue("tests:add", [2, 3], timeout=10)
    assert follow.result(timeout=15) == 5
    assert worker.returncode is None


def test_thread_pool_timed_out_thread_keeps_its_slot(procs: Procs, app: Orchestrator) -> None:
    """A thread cannot be stopped. Until it returns, its slot is busy: the worker must not
    claim a task it has no thread for (it would wait for one, then time out unrun)."""
    worker = procs.worker("w1", pool="thread", concurrency=1)
    slow = app.enqueue("tests:sleep", [2], timeout=0.3, max_retries=0)
    wait_final(procs, slow, worker)
    assert slow.info().error.type == "TaskTimeout"  # type: ignore[union-attr]

    follow = app.enqueue("tests:add", [2, 3], timeout=1, max_retries=0)
    try:
        assert follow.result(timeout=15) == 5
    except TaskFailed as exc:
        raise AssertionError(f"the next task failed without running: {exc}") from None
    order = [(a.task_id, a.event) for a in procs.attempts()]
    assert order == [(slow.id, "start"), (slow.id, "end"), (follow.id, "run")]


# ---------------------------------------------------------------- bad tasks


def test_unknown_task_fails_at_once_and_the_worker_goes_on(procs: Procs, app: Orchestrator) -> None:
    worker = procs.worker("w1")
    unknown = app.enqueue("tests:no_such_task", [1], max_retries=3)
    wait_final(procs, unknown, worker)

    info = unknown.info()
    assert info.state is TaskState.FAILED, "an unknown name fails at once, retries or not"
    assert info.error is not None and info.error.type == "UnknownTask"
    assert "tests:no_such_task" in info.error.message
    assert info.attempts == 1
    assert app.enqueue("tests:add", [1, 2]).result(timeout=10) == 3
    assert worker.returncode is None


def test_crashing_child_fails_the_task_and_the_worker_goes_on(procs: Procs, app: Orchestrator) -> None:
    worker = procs.worker("w1", pool="process")
    crash = app.enqueue("tests:crash", max_retries=0)
    wait_final(procs, crash, worker, timeout=15)

    info = crash.info()
    assert info.state is TaskState.FAILED
    assert info.error is not None and info.error.type == "ProcessCrashed", info.error
    assert app.enqueue("tests:add", [1, 2]).result(timeout=15) == 3
    assert worker.returncode is None


# ------------------------------------------------------------------- shutdown


def test_sigterm_finishes_short_tasks_and_releases_long_ones(procs: Procs, app: Orchestrator) -> None:
    # A long lease and no reaper: the long tasks can only reach w2 by being released.
    grace = 1.5
    w1 = procs.worker("w1", concurrency=4, lease=20, heartbeat=0.2, grace=grace)
    short = [app.enqueue("tests:sleep", [0.6]) for _ in range(2)]
    long = [app.enqueue("tests:sleep", [30]) for _ in range(2)]
    ids = {h.id for h in short + long}
    wait_for(
        lambda: {a.task_id for a in procs.attempts() if a.event == "start" and a.pid == w1.pid} == ids,
        "w1 to start all four tasks", alive=[w1],
    )
    w2 = procs.worker("w2", concurrency=2, lease=20, heartbeat=0.2)

    w1.terminate()
    assert w1.wait_exit(grace + 5) == 0
    assert "Stopped: 2 finished, 2 released" in w1.log()
    assert not procs.registered("w1"), "a stopped worker deregisters"
    assert not procs.redis.exists(procs.keys.worker("w1"))
    for handle in short:
        info = handle.info()
        assert (info.state, info.worker, info.attempts) == (TaskState.SUCCESS, "w1", 1)

    long_ids = {h.id for h in long}

    def started_on_w2() -> list[Attempt] | None:
        found = [a for a in procs.attempts() if a.task_id in long_ids and a.pid == w2.pid]
        return found if len(found) == len(long_ids) else None

    # No reaper runs and the lease is 20 s: only a release can have given them to w2.
    restarted = wait_for(started_on_w2, "w2 to start the released tasks", 15, alive=[w2])
    assert [a.attempt for a in restarted] == [1, 1], "a released attempt is not counted"
    for handle in long:
        info = handle.info()
        assert (info.state, info.worker, info.attempts) == (TaskState.RUNNING, "w2", 1)
    released = procs.events("released")
    assert sorted(e["task"] for e in released) == sorted(long_ids)
    assert {e["worker"] for e in released} == {"w1"}
    assert procs.events("reaped") == []


# ------------------------------------------------------------------ idle wake-up


def test_idle_worker_starts_a_new_task_without_polling_delay(procs: Procs, app: Orchestrator) -> None:
    """The worker blocks on its wake-up key for up to 30 s: each task finishing within 5 s
    proves enqueue woke it. (How fast: the latency workload of scripts/bench.)"""
    worker = procs.worker("w1", idle_wait=30)
    for i in range(5):
        wait_for(lambda: procs.blocked_clients() >= 1, "the idle worker to block on its wake-up key", alive=[worker])
        handle = app.enqueue("tests:add", [i, 1])
        assert handle.result(timeout=5) == i + 1


def test_process_pool_children_die_with_a_killed_worker(procs: Procs, app: Orchestrator) -> None:
    """A worker killed -9 mid-task: its pool child must not finish (or start) tasks whose
    leases are gone. On Linux the kernel kills the child with its parent."""
    worker = procs.worker("w1", pool="process", concurrency=1)
    children = pool_children(worker.pid)
    assert children, "the process pool should have started its child"
    slow = app.enqueue("tests:sleep", [3], max_retries=0)
    wait_for(lambda: slow.status() is TaskState.RUNNING, "the task to start", alive=[worker])
    worker.kill9()

    def gone(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"  # a zombie has exited
        except FileNotFoundError:
            return True

    # No deadline of speed: a child that survived its worker never becomes gone.
    wait_for(lambda: all(gone(pid) for pid in children), "the pool child to die with its worker")
    assert "end" not in [a.event for a in procs.attempts() if a.task_id == slow.id]
    assert slow.status() is TaskState.RUNNING  # left for the reaper: nothing else touched it
