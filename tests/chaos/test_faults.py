"""Faults the queue must survive, each on its own real redis-server where it breaks Redis.

Redis killed -9 and restarted on its append-only file; a worker cut off from Redis (a
pausable TCP proxy) for longer than its lease; Redis stalled (DEBUG SLEEP) for less than
a lease; poison pills that kill their own worker process; Redis out of memory under
noeviction; worker and scheduler clocks skewed by minutes; and malformed script
arguments. Processes are the real ``orch`` command (tests/integration/procs.py); every
wait has a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import signal
import socket
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.asyncio import Redis as AsyncRedis

from orchestrator import Orchestrator, Settings, TaskHandle
from orchestrator.errors import OrchestratorError
from orchestrator.keys import QueueKeys
from orchestrator.models import INDEX_OF, INDEXES, TaskState
from orchestrator.redis_local import LocalRedis
from orchestrator.script_calls import SCRIPT_NAMES, Call, arun, arun_many, run, script
from orchestrator.transitions import TaskSpec, Transitions
from tests.integration.procs import Procs, wait_for
from tests.lua.test_scripts import ERROR, MAX_PAYLOAD, spec
from tests.redis_server import snapshot

S = TaskState
FAULT_APP = "tests.chaos.fault_tasks"
SAMPLE_APP = "tests.integration.sample_tasks"


@contextlib.contextmanager
def private_server(*, appendonly: bool = False, **options: Any) -> Iterator[tuple[LocalRedis, Orchestrator]]:
    """A redis-server of the test's own (never 6379) and an Orchestrator on it."""
    server = LocalRedis(appendonly=appendonly, **options).start()
    app = Orchestrator(settings=Settings(redis_url=server.url))
    try:
        yield server, app
    finally:
        app.close()
        server.stop()


def _placeholder(*args: Any, **kwargs: Any) -> None:
    """Registered under a task's name in the test's app, to give its enqueue that task's options
    (any arguments: the enqueue checks them against this signature, the worker runs the real one)."""


def ids(handles: list[TaskHandle]) -> list[str]:
    return [h.id for h in handles]


def logical_state(r: redis.Redis) -> dict[bytes, Any]:
    """Every key's value as plain data (hash, zset with scores, string, list, stream)
    and whether it expires: comparable across a restart, unlike DUMP."""
    out: dict[bytes, Any] = {}
    for key in sorted(r.scan_iter(count=1000)):
        kind = r.type(key)
        if kind == b"hash":
            value: Any = r.hgetall(key)
        elif kind == b"zset":
            value = r.zrange(key, 0, -1, withscores=True)
        elif kind == b"string":
            value = r.get(key)
        elif kind == b"list":
            value = r.lrange(key, 0, -1)
        elif kind == b"set":
            value = sorted(r.smembers(key))
        elif kind == b"stream":
            value = r.xrange(key)
        else:
            raise AssertionError(f"unexpected key type {kind!r} of {key!r}")
        out[key] = (kind, value, r.pttl(key) >= 0)
    return out


def check_consistent(r: redis.Redis, keys: QueueKeys) -> None:
    """Every task record sits in exactly the index its state names, and every index
    entry has a record: nothing is half-written."""
    prefix = keys.task("").encode()
    states = {
        key[len(prefix) :].decode(): TaskState(r.hget(key, "state").decode())
        for key in r.scan_iter(match=keys.task("*"), count=1000)
    }
    members = {index: {m.decode() for m in r.zrange(getattr(keys, index), 0, -1)} for index in INDEXES}
    for task_id, state in states.items():
        holders = [index for index in INDEXES if task_id in members[index]]
        assert holders == [INDEX_OF[state]], f"task {task_id} is {state.value} but sits in {holders}"
    for index, found in members.items():
        assert found <= states.keys(), f"{index} holds ids without a record: {sorted(found - states.keys())}"


# ============================================================ Redis restart on AOF


@pytest.mark.slow
def test_acknowledged_tasks_survive_kill9_of_redis_and_expired_leases_are_reaped_after(tmp_path: Path) -> None:
    # appendfsync always: an acknowledged write is on disk before its reply is sent.
    with private_server(appendonly=True, extra=("--appendfsync", "always")) as (server, app):
        q = app._scripts("default")
        r = app.redis
        waiting = app.enqueue_many([app.request("tests:add", [i, 1], priority=1 + i % 9) for i in range(20)])
        delayed = app.enqueue_many([app.request("tests:add", [i, 2], delay=0.5) for i in range(5)])
        keyed = [app.enqueue("tests:add", [i, 3], key=f"order-{i}") for i in range(3)]
        ghost = app.enqueue_many([app.request("tests:add", [i, 4], priority=0) for i in range(4)])
        leases = run(r, q.claim("ghost", 4, 1000))  # a worker that dies at once: leases of 1 s
        claimed = time.monotonic()
        assert [x.task_id for x in leases] == ids(ghost)
        finished = app.enqueue_many([app.request("tests:add", [i, 5], priority=0) for i in range(2)])
        done_leases = run(r, q.claim("w0", 2, 60_000))
        run(r, q.complete(done_leases[0].task_id, done_leases[0].token, b"10", 0))
        run(r, q.fail(done_leases[1].task_id, done_leases[1].token, ERROR, mode="fatal"))
        before = logical_state(r)
        shas = [script(name).sha for name in ("enqueue", "claim", "complete", "fail")]
        assert all(r.script_exists(*shas))

        server.kill()
        wait_for(lambda: time.monotonic() > claimed + 1.2, "the ghost's leases to expire while Redis is down")
        server.start()  # same port, same directory: reloads the append-only file
        r.connection_pool.disconnect()

        assert logical_state(r) == before, "an acknowledged write was lost by kill -9 and restart"
        assert not any(r.script_exists(*shas)), "a restart should empty the script cache"
        check_consistent(r, q.keys)
        # The scripts load themselves again after NOSCRIPT, through script_calls.run
        # (deregistering a worker that never registered changes nothing):
        assert run(r, q.deregister("probe")).lost == []
        assert r.script_exists(script("heartbeat").sha) == [True]

        with Procs(server.url, tmp_path) as procs:
            scheduler = procs.scheduler()
            worker = procs.worker("w1", concurrency=4)
            everything = ids(waiting + delayed + keyed + ghost)
            wait_for(lambda: procs.all_in(everything, "SUCCESS"), "every task to succeed after the restart", 30,
                     alive=[scheduler, worker])
            reaped = Counter(e["task"] for e in procs.events("reaped"))
            assert reaped == Counter(ids(ghost)), "each expired lease reaped once, after the restart"
        for handle in ghost:
            info = handle.info()
            assert (info.attempts, info.worker) == (2, "w1")
        assert finished[0].status() is S.SUCCESS and finished[1].status() is S.FAILED
        for i, handle in enumerate(keyed):
            assert handle.result(timeout=1) == i + 3


def test_scripts_reload_after_a_restart_on_every_call_path() -> None:
    """A restart empties the script cache: the sync, async and pipelined paths all recover."""
    with private_server(appendonly=True, extra=("--appendfsync", "always")) as (server, app):
        q = app._scripts("default")
        app.enqueue_many([app.request("tests:add", [i, 0]) for i in range(4)])
        assert len(run(app.redis, q.claim("w", 1, 60_000))) == 1
        server.restart()
        app.redis.connection_pool.disconnect()
        assert len(run(app.redis, q.claim("w", 1, 60_000))) == 1

        async def both() -> tuple[Any, list[Any]]:
            client = AsyncRedis.from_url(server.url)
            try:
                one = await arun(client, q.claim("w", 1, 60_000))
                await client.script_flush()
                many = await arun_many(client, [q.claim("w", 1, 60_000), q.promote(10), q.reap(10)])
                return one, many
            finally:
                await client.aclose()

        server.restart()
        one, many = asyncio.run(both())
        assert len(one) == 1 and len(many[0]) == 1, many
        assert not any(isinstance(x, BaseException) for x in many), many
        app.redis.connection_pool.disconnect()
        assert app.redis.zcard(q.keys.running) == 4


# ================================================================ network partition


class PausableProxy:
    """A TCP proxy in front of Redis that can stop forwarding (a network partition that
    keeps connections open, as a dropped route does) and resume."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.flowing = threading.Event()
        self.flowing.set()
        self.closed = False
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        self.threads: list[threading.Thread] = []
        self._spawn(self._accept)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self.threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self.lock:
                if self.closed:
                    client.close()
                    upstream.close()
                    return
                self.sockets += [client, upstream]
            self._spawn(self._pump, client, upstream)
            self._spawn(self._pump, upstream, client)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                self.flowing.wait()  # paused: hold the bytes, send nothing on
                if self.closed:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

    def pause(self) -> None:
        self.flowing.clear()

    def resume(self) -> None:
        self.flowing.set()

    def close(self) -> None:
        with self.lock:
            self.closed = True
        self.flowing.set()
        self.listener.close()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self.threads:
            thread.join(timeout=5)


@pytest.mark.slow
def test_worker_cut_off_past_its_lease_cannot_commit_and_the_task_runs_elsewhere(
    app: Orchestrator, redis_server: LocalRedis, tmp_path: Path
) -> None:
    app.task(name="tests:sleep", backoff=0.05)(_placeholder)  # retried soon after the reap
    proxy = PausableProxy(redis_server.port)
    try:
        with Procs(redis_server.url, tmp_path) as direct, Procs(proxy.url, tmp_path) as cut:
            scheduler = direct.scheduler()
            w1 = cut.worker("w1", lease=1.0)  # everything it does goes through the proxy
            task = app.enqueue("tests:sleep", [1.0])
            [first] = wait_for(lambda: direct.attempts(task.id), "w1 to start the task", alive=[w1])
            proxy.pause()

            w2 = direct.worker("w2", lease=1.0)
            wait_for(lambda: direct.events("reaped"), "the reaper to take the task from the cut-off worker", 10,
                     alive=[scheduler, w1, w2])
            wait_for(lambda: direct.state(task.id) == "SUCCESS", "w2 to run the task", 15, alive=[scheduler, w2])
            done = direct.record(task.id)
            assert (done["worker"], done["attempts"]) == ("w2", "2")
            second = [a for a in direct.attempts(task.id) if a.attempt == 2]
            assert second and second[0].pid == w2.pid and done["token"] == second[0].token != first.token

            proxy.resume()  # the late result of w1 arrives now
            wait_for(lambda: f"Lease of task {task.id} lost" in w1.log(), "w1 to learn its lease is lost", 15,
                     alive=[w1])
            wait_for(lambda: any(a.event == "end" and a.attempt == 1 for a in direct.attempts(task.id)),
                     "w1's attempt to end", alive=[w1])
            wait_for(lambda: direct.registered("w1"), "w1 to heartbeat again", alive=[w1])
            assert direct.record(task.id) == done, "the cut-off worker's late outcome must change nothing"
            assert not re.search(rf"Task {task.id} .*succeeded", w1.log())
            assert [e["task"] for e in direct.events("succeeded")] == [task.id]
            assert [e["task"] for e in direct.events("reaped")] == [task.id]
            assert task.result(timeout=1) == 1.0
    finally:
        proxy.close()


# ==================================================================== Redis stall


@pytest.mark.slow
def test_redis_stall_shorter_than_the_lease_requeues_nothing(tmp_path: Path) -> None:
    debug = ("--enable-debug-command", "local")
    with private_server(extra=debug) as (server, app), Procs(server.url, tmp_path) as procs:
        scheduler = procs.scheduler()
        worker = procs.worker("w1", concurrency=3, lease=3.0, heartbeat=1.0)
        tasks = [app.enqueue("tests:sleep", [2.0]) for _ in range(3)]
        wait_for(lambda: len([a for a in procs.attempts() if a.event == "start"]) == 3,
                 "the three tasks to start", alive=[worker])
        stalled = time.monotonic()
        app.redis.execute_command("DEBUG", "SLEEP", "1")  # every client waits a second
        assert time.monotonic() - stalled >= 0.9
        wait_for(lambda: procs.all_in(ids(tasks), "SUCCESS"), "the tasks to finish", 15,
                 alive=[worker, scheduler])
        assert procs.events("reaped") == [] and procs.events("worker_lost") == []
        for handle in tasks:
            assert handle.info().attempts == 1
            assert [(a.attempt, a.event) for a in procs.attempts(handle.id)] == [(1, "start"), (1, "end")]
        stats = app.redis.hgetall(procs.keys.stats)
        assert b"reaped" not in stats and int(stats[b"succeeded"]) == 3
        assert procs.registered("w1")


# =================================================================== poison pills


@pytest.mark.slow
@pytest.mark.parametrize(("name", "exit_code"), [("faults:exit", 17), ("faults:segfault", -signal.SIGSEGV)])
def test_poison_pill_that_kills_its_worker_ends_failed_without_endless_requeue(
    app: Orchestrator, redis_server: LocalRedis, tmp_path: Path, name: str, exit_code: int
) -> None:
    with Procs(redis_server.url, tmp_path) as procs:
        scheduler = procs.scheduler()
        app.task(name=name, max_retries=1, backoff=0.05)(_placeholder)  # the options the worker's app gives it
        pill = app.enqueue(name)
        names = (f"w{i}" for i in itertools.count(1))

        def start() -> Any:
            return procs.worker(next(names), lease=0.6, apps=(FAULT_APP,), ready=False)

        worker = start()
        crashes: list[int] = []
        deadline = time.monotonic() + 40
        while procs.state(pill.id) != "FAILED":  # the test is the supervisor: restart the worker when it dies
            if worker.returncode is not None:
                crashes.append(worker.returncode)
                assert len(crashes) <= 2, f"the pill was handed out again after {crashes}\n{worker.tail()}"
                worker = start()
            assert scheduler.returncode is None, scheduler.tail()
            assert time.monotonic() < deadline, f"pill still {procs.state(pill.id)} after crashes {crashes}"
            time.sleep(0.02)

        assert crashes == [exit_code, exit_code], "each attempt should have taken its worker down"
        info = pill.info()
        assert (info.state, info.attempts) == (S.FAILED, 2)
        assert info.error is not None and info.error.type == "LeaseExpired"
        assert "lease expired" in info.error.message
        assert [e["task"] for e in procs.events("reaped")] == [pill.id] * 2
        # No endless requeue: the new worker stays up and runs other work; the pill stays dead.
        assert app.enqueue("faults:ok", [7]).result(timeout=15) == 7
        assert worker.returncode is None, worker.tail()
        assert (pill.status(), pill.info().attempts) == (S.FAILED, 2)
        assert app.redis.zcard(procs.keys.scheduled) == app.redis.zcard(procs.keys.pending) == 0


# ================================================================== out of memory


def fill_to_the_limit(r: redis.Redis) -> None:
    """Fill Redis until noeviction refuses a write, then pin maxmemory a little below
    what is used, so client buffers coming and going cannot bring it back under."""
    for i in itertools.count():
        try:
            r.set(f"filler:{i}", "x" * 20_000)
        except redis.exceptions.OutOfMemoryError:
            break
    r.config_set("maxmemory", r.info("memory")["used_memory"] - 64_000)
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        r.set("filler:probe", "x")


def test_enqueue_out_of_memory_raises_a_clear_error_and_writes_nothing() -> None:
    with private_server(extra=("--maxmemory", "2mb")) as (server, app):
        r = app.redis
        existing = app.enqueue("tests:add", [1, 1], key="k")
        fill_to_the_limit(r)
        before = snapshot(r)
        with contextlib.closing(Orchestrator(settings=Settings(redis_url=server.url))) as fresh:
            attempts: dict[str, Callable[[], Any]] = {
                "enqueue": lambda: app.enqueue("tests:add", [2, 2]),
                "enqueue with key and delay": lambda: app.enqueue("tests:add", [3, 3], key="other", delay=5),
                "enqueue_many": lambda: app.enqueue_many([app.request("tests:add", [i, i]) for i in range(10)]),
                "first enqueue of a new client": lambda: fresh.enqueue("tests:add", [4, 4], queue="other"),
            }
            unclear = []
            for what, enqueue in attempts.items():
                with pytest.raises(Exception) as info:
                    enqueue()
                assert snapshot(r) == before, f"{what} was refused but wrote something"
                check_consistent(r, app.keys("default"))
                exc = info.value
                if not isinstance(exc, OrchestratorError) or "memory" not in str(exc).lower():
                    unclear.append(f"{what}: {type(exc).__module__}.{type(exc).__name__}: {exc}")
        assert existing.status() is S.PENDING
        assert not unclear, "enqueue under OOM raised no OrchestratorError naming memory:\n" + "\n".join(unclear)


def _oom_calls(app: Orchestrator) -> list[tuple[str, Call[Any]]]:
    """One call of every script, each with work to do, built on a fresh queue."""
    r, q = app.redis, app._scripts("default")
    app.enqueue_many([app.request("tests:add", [i, 0], key=f"k{i}") for i in range(6)])
    app.enqueue("tests:add", [0, 0], delay=0.001)
    later = app.enqueue("tests:add", [0, 0], delay=3600)
    leases = run(r, q.claim("w1", 4, 1000))
    run(r, q.fail(leases[3].task_id, leases[3].token, ERROR, mode="fatal"))
    run(r, q.cancel(leases[2].task_id, 0))
    pending = [m.decode() for m in r.zrange(q.keys.pending, 0, -1)]
    time.sleep(0.01)  # the delayed task is due
    late = Transitions(q.keys, clock_offset_ms=5000)
    for sid in ("s1", "s2", "s3", "s5"):
        run(r, q.schedule_upsert(sid, 1, {"every": "60"}, {"task": "tests:add"}))
    tick_task = TaskSpec("", "tests:add", 5, b"[0,0]", b"{}", 0, 1000, 0, 0, 0, 0)
    return [
        ("schedule_upsert", q.schedule_upsert("s4", 1, {"every": "60"}, {"task": "tests:add"})),
        ("schedule_fire", q.schedule_fire("s1", "", 2, tick_task, [(1, "s1@1")])),
        ("schedule_remove", q.schedule_remove("s2")),
        ("schedule_pause", q.schedule_pause("s3", True)),
        ("schedule_set_aside", q.schedule_set_aside("s5", 10**13, "field 'args' does not read")),
        ("heartbeat", q.heartbeat("w1", 1000, {"host": "h"}, [(leases[0].task_id, leases[0].token)])),
        ("progress", q.progress(leases[0].task_id, leases[0].token, "0.5", b"null", max_bytes=1000)),
        ("watch", q.watch(pending[0])),
        ("complete", q.complete(leases[0].task_id, leases[0].token, b"1", 0)),
        ("fail", q.fail(leases[1].task_id, leases[1].token, ERROR)),
        ("release", q.release([(leases[2].task_id, leases[2].token)])),
        ("claim", q.claim("w2", 1, 1000)),
        ("cancel", q.cancel(pending[-1], 0)),
        ("promote", q.promote(10)),
        ("reap", late.reap(10)),
        ("retry_failed", q.retry_failed([leases[3].task_id])),
        ("purge", q.purge(q.keys.pending, 10)),
        ("enqueue", q.enqueue([spec()], max_payload=MAX_PAYLOAD)),
        ("pause", q.pause(True)),
        ("run_now", q.run_now(later.id)),
        ("delete", q.delete(leases[2].task_id)),
        ("rollup", q.rollup(8)),
    ]


def test_no_script_half_writes_when_redis_is_out_of_memory() -> None:
    """Redis refuses a no-shebang script's deny-oom write only while it has written
    nothing: so each script either runs whole or changes nothing."""
    with private_server(extra=("--maxmemory", "2mb")) as (_, app):
        r = app.redis
        calls = _oom_calls(app)
        fill_to_the_limit(r)
        outcomes = {}
        for name, call in calls:
            before = snapshot(r)
            try:
                run(r, call)
                outcomes[name] = "ran"
            except (redis.exceptions.ResponseError, OrchestratorError) as exc:
                outcomes[name] = f"refused: {exc}"
                assert snapshot(r) == before, f"{name} failed under OOM after writing: {exc}"
            check_consistent(r, app.keys("default"))
        assert set(outcomes) == set(SCRIPT_NAMES)


@pytest.mark.parametrize("name", ["complete", "fail", "purge", "heartbeat"])
def test_scripts_that_free_memory_work_when_redis_is_out_of_memory(name: str) -> None:
    """DESIGN.md: 'a script that frees memory (complete, fail, purge) needs flags=allow-oom
    or no shebang'. Otherwise a full Redis cannot take results, leases lapse, and the
    reaper hands the tasks out again: duplicates until someone frees memory by hand.
    The heartbeat frees nothing but must land for the same reason: it keeps leases."""
    with private_server(extra=("--maxmemory", "2mb")) as (_, app):
        r = app.redis
        call = dict(_oom_calls(app))[name]
        fill_to_the_limit(r)
        run(r, call)
        check_consistent(r, app.keys("default"))


# ===================================================================== clock skew


SITECUSTOMIZE = textwrap.dedent(
    """\
    # Shifts this process's wall clock by TEST_CLOCK_SKEW seconds (tests/chaos/test_faults.py).
    import os
    import sys
    import time

    _skew = float(os.environ.get("TEST_CLOCK_SKEW") or 0)
    if _skew:
        _time, _time_ns = time.time, time.time_ns
        time.time = lambda: _time() + _skew
        time.time_ns = lambda: _time_ns() + int(_skew * 1e9)
        print(f"clock skewed by {_skew:+g} s", file=sys.stderr, flush=True)
    """
)


@pytest.mark.slow
def test_skewed_worker_and_scheduler_clocks_change_nothing(
    app: Orchestrator, redis_server: LocalRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))
    r = app.redis

    def server_ms() -> int:
        sec, usec = r.time()
        return sec * 1000 + usec // 1000

    with Procs(redis_server.url, tmp_path) as procs:
        started = []
        for name, skew in (("ahead", 600), ("behind", -600)):
            monkeypatch.setenv("TEST_CLOCK_SKEW", str(skew))
            started.append(procs.scheduler(f"scheduler-{name}"))
            started.append(procs.worker(f"worker-{name}", concurrency=3, lease=1.0, heartbeat=0.2, ready=False))
        for proc in started:
            wait_for(lambda p=proc: "clock skewed by" in p.log(), f"{proc.name} to skew its clock", alive=[proc])
        wait_for(lambda: procs.registered("worker-ahead") and procs.registered("worker-behind"),
                 "both workers to register", alive=started)
        for name, skew in (("ahead", 600), ("behind", -600)):
            told = int(r.hget(procs.keys.worker(f"worker-{name}"), "started_at"))
            assert abs(told - server_ms() - skew * 1000) < 60_000, f"worker-{name} does not run skewed"

        delayed = app.enqueue_many([app.request("tests:add", [i, 0], delay=0.5 + 0.1 * i) for i in range(8)])
        long = [app.enqueue("tests:sleep", [2.0]) for _ in range(2)]  # outlive their 1 s lease
        everything = ids(delayed + long)
        wait_for(lambda: procs.all_in(everything, "SUCCESS"), "every task to succeed", 20, alive=started)

        for handle in delayed:
            info = handle.info()
            assert info.run_at is not None and info.started_at is not None
            late = info.started_at - info.run_at
            # A skewed clock would make this about 600,000 ms (or negative): any bound well under it holds.
            assert 0 <= late < 60_000, f"task {handle.id} started {late} ms after its run-at (Redis clock)"
            assert info.attempts == 1
        for handle in long:
            assert handle.info().attempts == 1
        assert procs.events("reaped") == [], "a lease was reaped while its worker heartbeated"
        assert procs.events("worker_lost") == []


# ============================================================ malformed arguments


BAD_VALUES = ("", "x", "-1", "1.5", "nan", "inf", "1e300")
_NUMERIC_OR_MODE = re.compile(r"-?[0-9]+(\.[0-9]+)?|cancelled|")  # what _setup_and_call's positions hold


def _shown(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _setup_and_call(r: redis.Redis, name: str) -> tuple[Call[Any], list[int]]:
    """Give ``name`` something to change, and return a valid call of it with the indexes
    (into its ARGV, 0-based) of its own numeric and mode arguments."""
    keys = QueueKeys("default")
    t = Transitions(keys)
    late = Transitions(keys, clock_offset_ms=3_600_000)
    run(r, t.enqueue([spec("a", key="ka"), spec("b"), spec("c", delay_ms=1000)], max_payload=MAX_PAYLOAD))
    run(r, t.enqueue([spec("f", max_retries=0)], max_payload=MAX_PAYLOAD))
    if name == "enqueue":
        call = t.enqueue([spec("n1", key="kn"), spec("n2", delay_ms=1000)], max_payload=MAX_PAYLOAD)
        # max_payload, n, then each task's 13 values from ARGV[6]: priority, max_retries, timeout_ms,
        # backoff_ms, backoff_max_ms, jitter, delay_ms (0-based positions)
        numeric = [3, 4] + [5 + i * 13 + j for i in range(2) for j in (2, 5, 6, 7, 8, 9, 10)]
        return call, numeric
    if name == "claim":
        return t.claim("w1", 2, 1000), [4, 5]
    if name == "promote":
        return late.promote(10), [3]
    if name == "cancel":
        return t.cancel("a", 60_000), [4]
    if name == "purge":
        return t.purge(keys.pending, 10), [3]
    if name == "pause":
        return t.pause(True), [3]
    if name == "run_now":
        return t.run_now("c"), []
    if name == "delete":
        return t.delete("a"), []
    if name.startswith("schedule_"):
        run(r, t.schedule_upsert("s1", 1, {"every": "60"}, {"task": "tests:add"}))
        if name == "schedule_upsert":
            return t.schedule_upsert("s1", 2, {"every": "30"}, {"task": "tests:add"}), [4, 5]
        if name == "schedule_fire":
            call = t.schedule_fire("s1", "", 5000, spec("x"), [(1000, "s1@1000")], [500])
            # expected, next_ms, overlap, priority, max_retries .. jitter, nfire, nskipped, a tick, a skipped tick
            return call, [4, 5, 6, 9, 12, 13, 14, 15, 16, 17, 18, 19, 21]
        if name == "schedule_remove":
            return t.schedule_remove("s1"), []
        if name == "schedule_set_aside":
            return t.schedule_set_aside("s1", 10**13, "why"), [4]
        return t.schedule_pause("s1", True), [4]
    if name == "rollup":
        run(r, t.heartbeat("w1", 60_000, {"running": 1, "concurrency": 2}, []))
        run(r, late.enqueue([spec("z")], max_payload=MAX_PAYLOAD))
        return t.rollup(8), [3]
    leases = {x.task_id: x for x in run(r, t.claim("w1", 3, 1000))}  # a, b, f
    run(r, t.fail("f", leases["f"].token, ERROR))
    if name == "heartbeat":
        run(r, t.heartbeat("w1", 1000, {"host": "h"}, []))
        return t.heartbeat("w1", 60_000, {"host": "h"}, [("a", leases["a"].token)]), [4, 5]
    if name == "complete":
        return t.complete("a", leases["a"].token, b"1", 60_000), [6]
    if name == "progress":
        return t.progress("a", leases["a"].token, "0.5", b'{"step": 1}', max_bytes=1000), [5, 7]
    if name == "watch":
        return t.watch("b"), []
    if name == "fail":
        return t.fail("a", leases["a"].token, ERROR, mode="cancelled", ttl_ms=60_000, seed=1), [6, 7, 8]
    if name == "release":
        run(r, t.cancel("a", 0))
        return t.release([("a", leases["a"].token), ("b", leases["b"].token)], ttl_ms=60_000), [3]
    if name == "reap":
        run(r, t.heartbeat("w1", 1000, {"host": "h"}, []))
        run(r, t.cancel("a", 0))  # so reap retires it with the ttl argument
        return late.reap(10, seed=1, ttl_ms=60_000), [3, 4, 5]
    if name == "retry_failed":
        return t.retry_failed(limit=10), [3]
    raise AssertionError(name)


def _violations(r: redis.Redis, name: str, positions: Callable[[list[int]], list[int]]) -> list[str]:
    """Send ``name`` with one argument at a time replaced by a malformed value, through
    raw EVALSHA; every call that answers an error must have changed nothing."""
    found = []
    r.flushdb()
    call, numeric = _setup_and_call(r, name)
    for index in numeric:  # the positions name numbers or modes still (a script's ARGV layout moved: #18)
        assert index < len(call.args) and _NUMERIC_OR_MODE.fullmatch(_shown(call.args[index])), (
            f"{name}: ARGV[{index + 1}] is not a number or mode argument: {call.args[index:index + 1]!r}")
    for index in positions(numeric):
        for bad in BAD_VALUES:
            r.flushdb()
            call, _ = _setup_and_call(r, name)
            args = list(call.args)
            args[index] = bad
            sha = r.script_load(call.script.source)
            before = snapshot(r)
            try:
                r.evalsha(sha, len(call.keys), *call.keys, *args)
            except redis.exceptions.ResponseError as exc:
                if snapshot(r) != before:
                    found.append(f"ARGV[{index + 1}]={bad!r}: error {str(exc)[:70]!r} after writing")
    return found


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_malformed_arguments_are_refused_before_the_first_write(r: redis.Redis, name: str) -> None:
    """Each numeric or mode argument of the script itself, replaced by garbage."""
    violations = _violations(r, name, lambda numeric: numeric)
    assert not violations, f"{name} is not rolled back:\n" + "\n".join(violations)


def test_malformed_common_arguments_are_refused_before_the_first_write(r: redis.Redis) -> None:
    """ARGV[2] (clock offset) and ARGV[3] (event stream cap), which every script takes."""
    violations = [f"{name} {v}" for name in SCRIPT_NAMES for v in _violations(r, name, lambda _: [1, 2])]
    assert not violations, "scripts write, then fail, on a malformed common argument:\n" + "\n".join(violations)
