"""Real worker and scheduler processes for the integration and chaos tests.

Owns starting ``orch worker`` / ``orch scheduler`` / ``orch reaper`` as subprocesses on a
test's private redis-server (``ORCH_REDIS_URL`` set, stderr in a log file, each in its
own process group), signalling them (kill -9, SIGTERM, SIGSTOP / SIGCONT), waiting on
conditions with a deadline, reading back what the sample tasks and the scripts
recorded, and killing whatever is left when a test ends. Does not assert anything
about the queue's behaviour: the tests do. The processes are the real ``orch`` command
of the venv, so the tests prove what users run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from orchestrator.connection import sync_client
from orchestrator.keys import QueueKeys

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_APP = "tests.integration.sample_tasks"
ATTEMPTS_KEY = "test:attempts"
T = TypeVar("T")


def orch_command() -> list[str]:
    """The ``orch`` console script beside this Python (``python -m orchestrator`` if absent)."""
    script = Path(sys.executable).parent / "orch"
    return [str(script)] if script.exists() else [sys.executable, "-m", "orchestrator"]


# --------------------------------------------------------------------------- waiting


def wait_for(
    condition: Callable[[], T],
    what: str,
    timeout: float = 10.0,
    *,
    alive: Iterable[Proc] = (),
    interval: float = 0.01,
) -> T:
    """Poll ``condition`` until it returns something truthy, and return that.

    Fails the test after ``timeout`` seconds, or at once when a process of ``alive``
    exits meanwhile, with the logs of those processes in the message.
    """
    watched = list(alive)
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        for proc in watched:
            if proc.returncode is not None:
                raise AssertionError(
                    f"{proc.name} exited with {proc.returncode} while waiting for {what}\n{proc.tail()}"
                )
        if time.monotonic() > deadline:
            logs = "\n".join(p.tail() for p in watched)
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}\n{logs}")
        time.sleep(interval)


# ------------------------------------------------------------------------- processes


@dataclass
class Proc:
    """One started process and its log."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, lines: int = 40) -> str:
        text = self.log().splitlines()[-lines:]
        return f"--- log of {self.name} (pid {self.pid}) ---\n" + "\n".join(text)

    def signal(self, signum: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, signum)

    def kill9(self) -> None:
        """kill -9 this process alone (a process-pool child notices and exits)."""
        self.signal(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def terminate(self) -> None:
        self.signal(signal.SIGTERM)

    def freeze(self) -> None:
        self.signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.signal(signal.SIGCONT)

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} did not exit within {timeout:g} s\n{self.tail()}") from None

    def cleanup(self) -> None:
        """Kill the process group (the process and any children it left) and reap it."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGCONT)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)  # the group is this process's own: start_new_session
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)


class Procs:
    """Starts processes against one redis-server and kills them all on exit."""

    def __init__(self, redis_url: str, logdir: Path, queue: str = "default") -> None:
        self.redis_url = redis_url
        self.logdir = logdir
        self.queue = queue
        self.keys = QueueKeys(queue)
        self.redis = sync_client(redis_url)
        self.started: list[Proc] = []

    def __enter__(self) -> Procs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for proc in self.started:
            proc.cleanup()
        if self.started:  # shown by pytest only when the test failed
            print("\n".join(p.tail(200) for p in self.started))
        self.redis.close()

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Proc:
        """``orch ARGS`` with ORCH_REDIS_URL set (and ``env`` added), in a process group of its own."""
        extra = env or {}
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}  # only what the test says
        env.update(ORCH_REDIS_URL=self.redis_url, ORCH_LOG_LEVEL="info", PYTHONUNBUFFERED="1")
        env.update(extra)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        log_path = self.logdir / f"{name}.log"
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(
                [*orch_command(), *args],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc = Proc(name, popen, log_path)
        self.started.append(proc)
        return proc

    def worker(
        self,
        name: str,
        *,
        concurrency: int = 1,
        pool: str = "thread",
        loop: str = "auto",
        lease: float = 1.0,
        heartbeat: float = 0.1,
        grace: float = 5.0,
        idle_wait: float | None = None,
        queues: Iterable[str] = ("default",),
        apps: Iterable[str] = (SAMPLE_APP,),
        ready: bool = True,
        env: dict[str, str] | None = None,
    ) -> Proc:
        """``orch worker``; with ``ready`` wait until it has registered (its first heartbeat)."""
        args = ["worker", "--name", name, "--concurrency", str(concurrency), "--pool", pool, "--loop", loop]
        args += ["--lease-timeout", f"{lease:g}", "--heartbeat-interval", f"{heartbeat:g}", "--grace", f"{grace:g}"]
        if idle_wait is not None:
            args += ["--idle-wait", f"{idle_wait:g}"]
        queues = list(queues)
        for queue in queues:
            args += ["-q", queue]
        for app in apps:
            args += ["--app", app]
        proc = self.start(name, args, env)
        if ready:
            keys = [QueueKeys(q).workers for q in queues]
            wait_for(lambda: all(self.redis.zscore(k, name) is not None for k in keys), f"{name} to register", 20,
                     alive=[proc])
        return proc

    def scheduler(
        self,
        name: str = "scheduler",
        *,
        interval: float = 0.05,
        batch: int = 100,
        reaper_only: bool = False,
        queues: Iterable[str] = ("default",),
        env: dict[str, str] | None = None,
    ) -> Proc:
        """``orch scheduler`` (or ``orch reaper``): stateless, so nothing to wait for."""
        args = ["reaper" if reaper_only else "scheduler", "--interval", f"{interval:g}"]
        args += ["--batch", str(batch)]
        for queue in queues:
            args += ["-q", queue]
        return self.start(name, args, env)

    # ------------------------------------------------------------ reading back

    def registered(self, worker: str) -> bool:
        return self.redis.zscore(self.keys.workers, worker) is not None

    def state(self, task_id: str) -> str | None:
        raw = self.redis.hget(self.keys.task(task_id), "state")
        return raw.decode() if raw is not None else None

    def states(self, task_ids: Iterable[str]) -> Counter[str | None]:
        pipe = self.redis.pipeline(transaction=False)
        for task_id in task_ids:
            pipe.hget(self.keys.task(task_id), "state")
        return Counter(s.decode() if s is not None else None for s in pipe.execute())

    def all_in(self, task_ids: Iterable[str], *states: str) -> bool:
        counts = self.states(task_ids)
        return set(counts) <= set(states)

    def record(self, task_id: str) -> dict[str, str]:
        raw = self.redis.hgetall(self.keys.task(task_id))
        return {k.decode(): v.decode() for k, v in raw.items()}

    def attempts(self, task_id: str | None = None) -> list[Attempt]:
        """What the sample tasks recorded, oldest first (thread and asyncio pools only)."""
        found = [Attempt.parse(raw) for raw in self.redis.lrange(ATTEMPTS_KEY, 0, -1)]
        return [a for a in found if task_id is None or a.task_id == task_id]

    def events(self, kind: str | None = None) -> list[dict[str, str]]:
        """The queue's event stream, oldest first, optionally only one kind of event."""
        out = []
        for _, fields in self.redis.xrange(self.keys.events):
            event = {k.decode(): v.decode() for k, v in fields.items()}
            if kind is None or event.get("event") == kind:
                out.append(event)
        return out

    def blocked_clients(self) -> int:
        """Clients blocked in BLPOP: an idle worker waiting for its wake-up key."""
        return sum(1 for c in self.redis.client_list() if c.get("cmd") == "blpop" and "b" in c.get("flags", ""))


@dataclass(frozen=True)
class Attempt:
    """One line of ``test:attempts``: "id attempt token event pid"."""

    task_id: str
    attempt: int
    token: str
    event: str
    pid: int

    @classmethod
    def parse(cls, raw: bytes) -> Attempt:
        task_id, attempt, token, event, pid = raw.decode().split()
        return cls(task_id, int(attempt), token, event, int(pid))
