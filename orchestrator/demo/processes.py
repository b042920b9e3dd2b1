"""The demo's child processes: a scheduler and workers started as a user would, stopped in order.

Owns the settings the demo runs them with (short heartbeats and leases, so a killed
worker shows within seconds), their command lines and environment, starting each in its
own session with its output in a log file, and stopping them (SIGTERM, then SIGKILL).
Does not decide when to start or kill them (``demo``).
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..config import REDIS_URL_ENV
from ..redis_local import die_with_parent
from . import tasks as demo_tasks

QUEUE = "default"
CONCURRENCY = 4  # slots per worker
HEARTBEAT = 0.5  # seconds between heartbeats: short, so a dead worker shows within seconds
LEASE = 2.0  # seconds a lease lasts without a heartbeat
SCHEDULER_INTERVAL = 0.2  # seconds between promote / reap passes
GRACE = 2.0  # seconds a worker's running tasks get on SIGTERM
STOP_TIMEOUT = GRACE + 3.0  # seconds they get to exit on SIGTERM before SIGKILL
LOG_TAIL = 4  # lines of a failed process's output shown in the error


@dataclass
class Child:
    """A process the demo started, its output going to a log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    killed: bool = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return " | ".join(line.strip() for line in lines[-LOG_TAIL:] if line.strip())


def child_env(redis_url: str, prefix: str) -> dict[str, str]:
    """The children's environment: ours without ORCH_* settings, plus the demo's Redis and prefix."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    env.update({REDIS_URL_ENV: redis_url, demo_tasks.PREFIX_ENV: prefix, "PYTHONUNBUFFERED": "1"})
    return env


def worker_command(name: str) -> list[str]:
    return [
        sys.executable, "-m", "orchestrator", "worker", "--app", demo_tasks.__name__, "-q", QUEUE,
        "--concurrency", str(CONCURRENCY), "--pool", "thread", "--name", name,
        "--heartbeat-interval", str(HEARTBEAT), "--grace", str(GRACE), "--lease-timeout", str(LEASE),
    ]


def scheduler_command() -> list[str]:
    return [sys.executable, "-m", "orchestrator", "scheduler", "-q", QUEUE, "--interval", str(SCHEDULER_INTERVAL)]


def spawn(name: str, command: Sequence[str], env: dict[str, str], log_dir: Path) -> Child:
    """Start ``command`` in its own session (Ctrl-C reaches only the demo, which stops it in order)."""
    log = log_dir / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            list(command), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
            start_new_session=True, preexec_fn=die_with_parent,
        )
    return Child(name, proc, log)


def stop_children(children: Sequence[Child], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM every live child, wait up to ``timeout`` in all, then SIGKILL the rest."""
    live = [c for c in children if c.proc.poll() is None]
    for child in live:
        with contextlib.suppress(ProcessLookupError):
            child.proc.terminate()
    deadline = time.monotonic() + timeout
    for child in live:
        try:
            child.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.proc.kill()
            child.proc.wait()
