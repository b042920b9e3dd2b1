"""The chaos soak's processes: start, signal, replace and clean up; and the event tailer.

Owns the ``orch worker`` / ``orch scheduler`` / producer processes of one soak (each in its
own process group, with ``ORCH_REDIS_URL`` and a log file), the faults done to them (kill -9
of the process alone, SIGSTOP / SIGCONT of its whole group), noticing any that exited by
itself, and ``EventTailer``, which reads the queues' capped event streams as they grow and
rides out the Redis restart. Does not decide when to break what (``soak``) nor check
anything (``soak_check``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import redis

from orchestrator.cli.commands import EXIT_UNREACHABLE
from orchestrator.connection import is_cluster, sync_client
from orchestrator.keys import QueueKeys
from tests.integration.procs import ROOT, Proc, orch_command

from .soak_evidence import Event
from .soak_tasks import ASYNC_QUEUE, SYNC_QUEUE, WORKER_ENV

TASKS_APP = "tests.chaos.soak_tasks"
QUEUES = (SYNC_QUEUE, ASYNC_QUEUE)
STARTED = "Started:"  # workers and schedulers log it once past first contact, signal handlers set
POOLS: dict[str, tuple[int, tuple[str, ...]]] = {  # pool: concurrency, queues (in claim order)
    "thread": (4, (SYNC_QUEUE, ASYNC_QUEUE)),
    "process": (3, (SYNC_QUEUE,)),
    "asyncio": (8, (ASYNC_QUEUE,)),
}


# ------------------------------------------------------------------------ processes


@dataclass
class Member:
    """One started process and what the soak did to it."""

    proc: Proc
    role: str  # worker, scheduler or producer
    pool: str | None = None
    frozen_until: float | None = None
    killed: bool = False  # by the soak: its exit is expected
    stopping: bool = False

    @property
    def name(self) -> str:
        return self.proc.name

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    @property
    def serving(self) -> bool:
        return STARTED in self.proc.log()

    def refused_to_start(self) -> bool:
        """It exited before serving because Redis could not be reached (the soak had it down):
        what ``orch`` does by design at start; a supervisor starts it again."""
        return self.role != "producer" and self.proc.returncode == EXIT_UNREACHABLE and not self.serving


class Fleet:
    """Starts, signals and replaces the soak's processes; kills them all on ``cleanup``."""

    def __init__(
        self, redis_url: str, logdir: Path, *, lease: float, heartbeat: float, rate: float, durability: str = "fast"
    ) -> None:
        self.redis_url = redis_url
        self.durability = durability  # ORCH_DURABILITY of every process it starts
        self.logdir = logdir
        self.lease = lease
        self.heartbeat = heartbeat
        self.rate = rate
        self.members: list[Member] = []
        self.started: Counter[str] = Counter()
        self.unexpected: list[str] = []
        self.refused: list[str] = []  # started while Redis was down: exited 3, started again

    def _spawn(self, name: str, argv: list[str], env_extra: dict[str, str] | None = None) -> Proc:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCH_", "SOAK_"))}
        env.update(ORCH_REDIS_URL=self.redis_url, ORCH_LOG_LEVEL="info", PYTHONUNBUFFERED="1", **(env_extra or {}))
        env["ORCH_DURABILITY"] = self.durability
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        log_path = self.logdir / f"{name}.log"
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: a freeze stops its pool children too
            )
        return Proc(name, popen, log_path)

    def _add(self, member: Member) -> Member:
        self.members.append(member)
        self.started[member.pool or member.role] += 1
        return member

    def worker(self, pool: str) -> Member:
        concurrency, queues = POOLS[pool]
        name = f"w-{pool}-{self.started[pool] + 1}"
        argv = [*orch_command(), "worker", "--name", name, "--pool", pool, "--concurrency", str(concurrency),
                "--lease-timeout", f"{self.lease:g}", "--heartbeat-interval", f"{self.heartbeat:g}",
                "--grace", "5", "--idle-wait", "0.5", "--app", TASKS_APP]
        for queue in queues:
            argv += ["-q", queue]
        return self._add(Member(self._spawn(name, argv, {WORKER_ENV: name}), "worker", pool))

    def scheduler(self) -> Member:
        name = f"s-{self.started['scheduler'] + 1}"
        argv = [*orch_command(), "scheduler", "--interval", "0.2", "--batch", "200"]
        for queue in QUEUES:
            argv += ["-q", queue]
        return self._add(Member(self._spawn(name, argv), "scheduler"))

    def producer(self, index: int, seed: int, until: float, out: Path) -> Member:
        argv = [sys.executable, "-m", "tests.chaos.soak_producer", "--index", str(index), "--seed", str(seed),
                "--until", f"{until:.3f}", "--rate", f"{self.rate:g}", "--out", str(out)]
        return self._add(Member(self._spawn(f"producer-{index}", argv), "producer"))

    def live(self, role: str, *, frozen: bool | None = None) -> list[Member]:
        found = [m for m in self.members if m.role == role and m.alive and not m.killed and not m.stopping]
        if frozen is not None:
            found = [m for m in found if (m.frozen_until is not None) == frozen]
        return found

    def kill9(self, member: Member) -> None:
        member.killed = True
        member.proc.kill9()  # the process alone, as a crash would: its pool children notice and exit

    def freeze(self, member: Member, until: float) -> None:
        member.frozen_until = until
        with contextlib.suppress(ProcessLookupError):
            os.killpg(member.proc.pid, signal.SIGSTOP)

    def thaw(self, member: Member) -> None:
        member.frozen_until = None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(member.proc.pid, signal.SIGCONT)

    def thaw_due(self, now: float) -> list[Member]:
        due = [m for m in self.members if m.frozen_until is not None and now >= m.frozen_until]
        for member in due:
            self.thaw(member)
        return due

    def replace_exited(self, restart: bool = True) -> None:
        """A worker or scheduler that exited by itself is a finding: note it and start another."""
        for member in list(self.members):
            if member.killed or member.stopping or member.alive:
                continue
            code = member.proc.returncode
            if member.role == "producer" and code == 0:
                continue
            member.killed = True  # noted once
            if member.refused_to_start():
                self.refused.append(member.name)
            else:
                self.unexpected.append(f"{member.name} exited with {code}\n{member.proc.tail(15)}")
            if not restart:
                continue
            if member.role == "worker" and member.pool is not None:
                self.worker(member.pool)
            elif member.role == "scheduler":
                self.scheduler()

    def stop(self, roles: Sequence[str], timeout: float) -> None:
        """SIGTERM the live members of ``roles`` (thawed first) and wait for them, up to ``timeout``."""
        members = [m for m in self.members if m.role in roles and m.alive and not m.killed]
        for member in members:
            if member.frozen_until is not None:
                self.thaw(member)
            member.stopping = True
            member.proc.terminate()
        deadline = time.monotonic() + timeout
        for member in members:
            with contextlib.suppress(subprocess.TimeoutExpired):
                member.proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            code = member.proc.returncode
            if code == -signal.SIGTERM and not member.serving:
                continue  # stopped while it started, before its handlers were set: nothing ran
            if code != 0 and member.role != "producer":
                how = f"exited with {code}" if code is not None else f"was still running {timeout:g} s later"
                self.unexpected.append(f"{member.name} {how} on SIGTERM\n{member.proc.tail(15)}")

    def cleanup(self) -> None:
        """Kill every process group the soak started (orphaned pool children included)."""
        for member in self.members:
            member.stopping = True
            member.proc.cleanup()


# --------------------------------------------------------------------- event tailer


class EventTailer(threading.Thread):
    """Reads the queues' event streams as they grow (they are capped, so the end is too late),
    riding out the Redis restart, and keeps every event in order."""

    def __init__(self, redis_url: str, path: Path) -> None:
        super().__init__(name="soak-events", daemon=True)
        self.redis_url = redis_url
        self.path = path
        self.streams = {QueueKeys(q).events: q for q in QUEUES}
        self.last = dict.fromkeys(self.streams, "0-0")
        self.events: list[Event] = []
        self.read: Counter[str] = Counter()
        self._stop_event = threading.Event()

    def run(self) -> None:
        client = sync_client(self.redis_url)
        try:
            with open(self.path, "ab") as out:
                while not self._stop_event.is_set():
                    try:
                        self.poll(client, out, block_ms=500)
                    except (redis.RedisError, OSError):
                        time.sleep(0.2)
        finally:
            client.close()

    def poll(self, client: redis.Redis, out: Any, block_ms: int | None) -> int:
        if is_cluster(client):  # the streams sit on different slots: one XREAD each, polled
            reply = [found for key in self.streams for found in client.xread({key: self.last[key]}, count=5000)]
            if not reply and block_ms:
                time.sleep(0.05)
        else:
            reply = client.xread(dict(self.last), count=5000, block=block_ms)
        n = 0
        for stream, entries in reply or []:
            key = stream.decode()
            queue = self.streams[key]
            for raw_id, raw_fields in entries:
                stream_id = raw_id.decode()
                fields = {k.decode(): v.decode() for k, v in raw_fields.items()}
                self.events.append(Event.parse(queue, stream_id, fields))
                out.write(orjson.dumps({"queue": queue, "id": stream_id, **fields}) + b"\n")
                self.last[key] = stream_id
                self.read[queue] += 1
                n += 1
        return n

    def finish(self) -> None:
        """Stop the thread, then read whatever is left."""
        self._stop_event.set()
        self.join(timeout=30)
        client = sync_client(self.redis_url)
        try:
            with open(self.path, "ab") as out:
                while self.poll(client, out, block_ms=None):
                    pass
        finally:
            client.close()
