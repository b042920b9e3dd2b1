"""A private, throw-away redis-server: free port on 127.0.0.1, temporary directory.

Owns starting one redis-server process for tools that need a Redis of their own
(``orch demo`` when no ``--redis-url`` is given), waiting until it answers PING, and
stopping it and removing its directory. It never touches any other Redis. Does not
print or configure logging.
"""

from __future__ import annotations

import contextlib
import ctypes
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis

from .errors import ConfigurationError

START_TIMEOUT = 10.0  # seconds to wait for the first PING
STOP_TIMEOUT = 5.0  # seconds a SIGTERM gets before SIGKILL
START_ATTEMPTS = 3  # a free port can be taken by someone else before the server binds it
PR_SET_PDEATHSIG = 1  # prctl option (Linux)


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """In a child process: on Linux it gets ``sig`` if its parent dies first, so a
    SIGKILLed parent leaves no orphans (also usable as ``preexec_fn``). Elsewhere a no-op."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalRedis:
    """``with LocalRedis() as server: server.url`` — AOF on, noeviction, no RDB snapshots."""

    def __init__(self, *, appendonly: bool = True) -> None:
        self.appendonly = appendonly
        self.port = 0
        self.dir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def __enter__(self) -> LocalRedis:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> LocalRedis:
        exe = shutil.which("redis-server")
        if exe is None:
            raise ConfigurationError(
                "redis-server not found: install Redis (scripts/setup does) or pass --redis-url"
            )
        self.dir = Path(tempfile.mkdtemp(prefix="orch-redis-"))
        try:
            for _ in range(START_ATTEMPTS):
                self.port = free_port()
                self.proc = subprocess.Popen(
                    self._args(exe), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    start_new_session=True, preexec_fn=die_with_parent,
                )
                if self._wait_for_ping():
                    return self
                self._kill()
            raise ConfigurationError(f"redis-server did not start: {self._log_tail() or 'no log'}")
        except BaseException:  # also Ctrl-C while it starts: leave no process and no directory
            self.stop()
            raise

    def _args(self, exe: str) -> list[str]:
        assert self.dir is not None
        return [
            exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
            "--save", "", "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec", "--maxmemory-policy", "noeviction",
            "--logfile", str(self.dir / "redis.log"),
        ]

    def _wait_for_ping(self) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        try:
            while self.proc.poll() is None and time.monotonic() < deadline:
                with contextlib.suppress(redis.ConnectionError):
                    if client.ping():
                        return True
                time.sleep(0.02)
            return False
        finally:
            client.close()

    def _log_tail(self, lines: int = 3) -> str:
        if self.dir is None:
            return ""
        try:
            text = (self.dir / "redis.log").read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text.splitlines()[-lines:])

    def _kill(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and remove its directory. Idempotent."""
        self._kill()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
