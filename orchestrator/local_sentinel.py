"""A private Redis Sentinel set for tests and measurements: one primary, one replica, three sentinels.

Owns ``LocalSentinel``: starting them on free ports (never 6379 nor 26379) in temporary
directories (``LocalRedis`` for the two servers), the sentinels' settings (a small
down-after, so a killed primary is replaced in two to three seconds), killing the primary
-9, waiting for the sentinels to name another one, and stopping everything. It never
touches any other Redis. Does not print or configure logging. See ARCHITECTURE.md for
the layers.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .errors import ConfigurationError
from .redis_local import START_TIMEOUT, LocalRedis, die_with_parent, free_port, redis_executable

SENTINEL_CONF = """port {port}
bind 127.0.0.1
dir {dir}
logfile {dir}/sentinel.log
sentinel monitor {name} 127.0.0.1 {primary} 2
sentinel down-after-milliseconds {name} {down_after_ms}
sentinel failover-timeout {name} {failover_timeout_ms}
sentinel parallel-syncs {name} 1
sentinel myid {myid}
sentinel known-replica {name} 127.0.0.1 {replica}
{known}
"""  # (myid and known-*: what a sentinel would learn from hello messages in a few seconds)


def _sentinel_id(port: int) -> str:
    """A sentinel's run id (40 hex digits), fixed by its port so the others can be told it."""
    return f"{port:040x}"


class LocalSentinel:
    """``with LocalSentinel() as s: s.url`` — one primary, one replica and three sentinels
    (quorum 2) on free ports, each in its own temporary directory.

    ``down_after_ms`` and ``failover_timeout_ms`` are the sentinels' settings: with the
    defaults a killed primary is replaced in about one to three seconds. ``kill_primary``
    kills -9 whichever server is the primary now; ``wait_failover`` waits until the
    sentinels name another one. ``stop`` kills everything and removes the directories.
    """

    def __init__(
        self,
        *,
        name: str = "orch",
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 2000,
        appendonly: bool = False,
    ) -> None:
        self.name = name
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        fast_sync = ["--repl-diskless-sync-delay", "0"]  # (5 s by default: waiting for more replicas)
        self.primary = LocalRedis(appendonly=appendonly, extra=fast_sync)
        self.replica = LocalRedis(appendonly=appendonly, extra=fast_sync)
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.dirs: list[Path] = []
        self.sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """``redis+sentinel://`` with every sentinel, the master's name and database 0."""
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.name}/0"

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The sentinels' (host, port), as redis-py's ``Sentinel`` takes them."""
        return [("127.0.0.1", port) for port in self.sentinel_ports]

    @property
    def servers(self) -> list[LocalRedis]:
        return [self.primary, self.replica]

    def __enter__(self) -> LocalSentinel:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> LocalSentinel:
        """Start the primary, the replica (synced) and the sentinels (each seeing the replica
        and the two other sentinels)."""
        exe = redis_executable("redis-server")
        try:
            self.primary.start()
            self.replica.extra = ["--replicaof", "127.0.0.1", str(self.primary.port), *self.replica.extra]
            self.replica.start()
            self._wait(lambda: self._client(self.replica.port).info("replication").get("master_link_status") == "up",
                       "the replica to sync")
            for port in self.sentinel_ports:
                self._start_sentinel(exe, port)
            self._wait(self._sentinels_ready, "the sentinels to find the replica and each other")
            return self
        except BaseException:
            self.stop()
            raise

    def _start_sentinel(self, exe: str, port: int) -> None:
        where = Path(tempfile.mkdtemp(prefix="orch-sentinel-"))
        self.dirs.append(where)
        conf = where / "sentinel.conf"  # sentinels rewrite their file: one each, writable
        known = "\n".join(
            f"sentinel known-sentinel {self.name} 127.0.0.1 {other} {_sentinel_id(other)}"
            for other in self.sentinel_ports if other != port
        )
        conf.write_text(SENTINEL_CONF.format(
            port=port, dir=where, name=self.name, primary=self.primary.port, replica=self.replica.port,
            down_after_ms=self.down_after_ms, failover_timeout_ms=self.failover_timeout_ms,
            myid=_sentinel_id(port), known=known,
        ))
        self.sentinels.append(subprocess.Popen(
            [exe, str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=die_with_parent,
        ))

    def _sentinels_ready(self) -> bool:
        for port in self.sentinel_ports:
            master = self._client(port).sentinel_master(self.name)
            if not isinstance(master, dict):
                return False
            if int(master.get("num-slaves", 0)) < 1 or int(master.get("num-other-sentinels", 0)) < 2:
                return False
        return True

    @staticmethod
    def _client(port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_connect_timeout=1, socket_timeout=1, retry=Retry(NoBackoff(), 0))

    def _wait(self, ready: Callable[[], object], what: str, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError):
                if ready():
                    return
            time.sleep(0.02)
        raise ConfigurationError(f"Sentinel set-up: timed out waiting for {what}")

    def _named_port(self, sentinel_port: int) -> int | None:
        found = self._client(sentinel_port).sentinel_get_master_addr_by_name(self.name)
        return int(found[1]) if isinstance(found, tuple | list) else None

    def primary_port(self) -> int:
        """The port of the server the sentinels name as the primary now."""
        for port in self.sentinel_ports:
            with contextlib.suppress(redis.RedisError):
                named = self._named_port(port)
                if named is not None:
                    return named
        raise ConfigurationError("no sentinel answers")

    def current_primary(self) -> LocalRedis:
        port = self.primary_port()
        return next(s for s in self.servers if s.port == port)

    def kill_primary(self) -> LocalRedis:
        """kill -9 the server that is the primary now; returns it (``start`` brings it back,
        and the sentinels make it a replica of the new primary)."""
        server = self.current_primary()
        server.kill()
        return server

    def wait_failover(self, old_port: int, timeout: float = 15.0) -> int:
        """Wait until every sentinel names a primary other than ``old_port``, that answers as
        a primary; returns its port."""
        found: list[int] = []

        def moved() -> bool:
            ports = {self._named_port(p) for p in self.sentinel_ports}
            port = ports.pop() if len(ports) == 1 else None
            if port is None or port == old_port:
                return False
            if self._client(port).info("replication").get("role") != "master":
                return False
            found.append(port)
            return True

        self._wait(moved, "the failover", timeout)
        return found[-1]

    def stop(self) -> None:
        """Kill the sentinels and both servers and remove every directory. Idempotent."""
        for proc in self.sentinels:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.sentinels = []
        for where in self.dirs:
            shutil.rmtree(where, ignore_errors=True)
        self.dirs = []
        for server in self.servers:
            server.stop()
