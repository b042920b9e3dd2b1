"""A private, throw-away redis-server: free port on 127.0.0.1, temporary directory.

Owns starting redis-server processes of our own (one, or a local Redis Cluster of six:
``LocalCluster``), the one launcher for ``orch demo``
(when no ``--redis-url`` is given), the test suite, the chaos soak and the benchmarks:
a free port (never 6379 nor 26379) or a given one, waiting until it answers PING, killing
it -9 and starting it again on the same port and directory (its append-only file),
stopping it and removing its directory. It never touches any other Redis. Does not print
or configure logging; a Sentinel set is ``local_sentinel.LocalSentinel``. See ARCHITECTURE.md for the layers.
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
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .errors import ConfigurationError

START_TIMEOUT = 10.0  # seconds to wait for the first PING
STOP_TIMEOUT = 5.0  # seconds a SIGTERM gets before SIGKILL
START_ATTEMPTS = 3  # a free port can be taken by someone else before the server binds it
PR_SET_PDEATHSIG = 1  # prctl option (Linux)
SHARED_PORT = 6379  # the machine's own Redis: never ours
SHARED_PORTS = (SHARED_PORT, 26379)  # ...nor its Sentinel's


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """In a child process: on Linux it gets ``sig`` if its parent dies first, so a
    SIGKILLed parent leaves no orphans (also usable as ``preexec_fn``). Elsewhere a no-op."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig)


def redis_executable(name: str, hint: str = "") -> str:
    """The path of Redis's program ``name`` (redis-server, redis-cli), else ConfigurationError."""
    found = shutil.which(name)
    if found is None:
        raise ConfigurationError(f"{name} not found: install Redis (scripts/setup does){hint}")
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (never 6379 nor 26379)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in SHARED_PORTS:
            return port


class LocalRedis:
    """``with LocalRedis() as server: server.url`` — noeviction, no RDB snapshots, AOF on
    (``appendonly=False`` for none), ``extra`` arguments last (they win over ours).

    ``port`` None picks a free port at the first start; ``dir`` exists from construction
    (a test may write an ACL file there first). ``ready_url``: the URL whose PING says the
    server is up, when the plain port does not answer (TLS only, no default user).
    """

    def __init__(
        self,
        *,
        appendonly: bool = True,
        port: int | None = None,
        extra: Sequence[str] = (),
        ready_url: str | None = None,
    ) -> None:
        self.appendonly = appendonly
        self._fixed_port = port is not None
        self.port = port or free_port()
        self.extra = list(extra)
        self.ready_url = ready_url
        self.dir: Path | None = Path(tempfile.mkdtemp(prefix="orch-redis-"))
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
        """Start the server (again, after ``kill``: same port, same directory) and wait for PING."""
        exe = redis_executable("redis-server", " or pass --redis-url")
        if self.dir is None:
            self.dir = Path(tempfile.mkdtemp(prefix="orch-redis-"))
        try:
            for attempt in range(1 if self._fixed_port else START_ATTEMPTS):
                if attempt:
                    self.port = free_port()
                self.proc = subprocess.Popen(
                    self._args(exe), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    start_new_session=True, preexec_fn=die_with_parent,
                )
                if self._wait_for_ping():
                    self._fixed_port = True  # a restart comes back where its clients look
                    return self
                self.kill()
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
            "--logfile", str(self.dir / "redis.log"), *self.extra,
        ]

    def _wait_for_ping(self) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        client = redis.Redis.from_url(
            self.ready_url or self.url, socket_connect_timeout=1, socket_timeout=1, retry=Retry(NoBackoff(), 0)
        )
        try:
            while self.proc.poll() is None and time.monotonic() < deadline:
                with contextlib.suppress(redis.RedisError):  # not up yet, loading, or not ours
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

    def kill(self) -> None:
        """kill -9 the server, keeping its directory: writes not yet in the append-only
        file are lost, as in a crash; ``start`` brings it back on the same port."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> None:
        """``kill`` then ``start``."""
        self.kill()
        self.start()

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and remove its directory. Idempotent."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


CLUSTER_NODE_TIMEOUT_MS = 1000  # a dead master is noticed and its replica promoted within ~2-3 s
CLUSTER_READY_TIMEOUT = 30.0


class LocalCluster:
    """``with LocalCluster() as cluster: cluster.url`` — a Redis Cluster of ``masters``
    masters with one replica each (six redis-server by default), on free ports in
    temporary directories, made with ``redis-cli --cluster create`` and returned once every
    node says ``cluster_state:ok`` and every replica is in sync. ``stop`` kills them all.

    Nodes time out after ``node_timeout_ms`` (small: a killed master's replica takes over
    within seconds), a replica may always take over (validity factor 0), and the slots of
    the live masters keep answering while another is down (full coverage not required).
    """

    def __init__(
        self, *, masters: int = 3, node_timeout_ms: int = CLUSTER_NODE_TIMEOUT_MS, appendonly: bool = False
    ) -> None:
        self.masters_count = masters
        extra = [
            "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(node_timeout_ms), "--cluster-replica-validity-factor", "0",
            "--cluster-require-full-coverage", "no", "--cluster-allow-reads-when-down", "no",
        ]
        self.nodes = [
            LocalRedis(appendonly=appendonly, extra=[*extra, "--cluster-port", str(free_port())])
            for _ in range(masters * 2)
        ]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> LocalCluster:
        """Start the nodes, join them (``--cluster-replicas 1``) and wait until the cluster is ok."""
        cli = redis_executable("redis-cli")
        try:
            for node in self.nodes:
                self._start_node(node)
            created = subprocess.run(
                [cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
                 "--cluster-replicas", "1", "--cluster-yes"],
                capture_output=True, timeout=CLUSTER_READY_TIMEOUT, check=False,
            )
            if created.returncode != 0:
                raise ConfigurationError(f"redis-cli --cluster create failed: {created.stdout[-300:]!r}")
            self.wait_ok()
            return self
        except BaseException:
            self.stop()
            raise

    @staticmethod
    def _start_node(node: LocalRedis) -> None:
        """Start one node; its cluster-bus port (the last argument) is chosen again when
        someone took it meanwhile (the client port is, by LocalRedis itself)."""
        for attempt in range(START_ATTEMPTS):
            try:
                node.start()
                return
            except ConfigurationError:
                if attempt == START_ATTEMPTS - 1:
                    raise
                node.extra[-1] = str(free_port())

    def _client(self, node: LocalRedis) -> redis.Redis:
        return redis.Redis(port=node.port, socket_connect_timeout=1, socket_timeout=2, retry=Retry(NoBackoff(), 0))

    def live(self) -> list[LocalRedis]:
        return [node for node in self.nodes if node.proc is not None and node.proc.poll() is None]

    def masters(self) -> list[LocalRedis]:
        """The live nodes that are masters now (a promoted replica included)."""
        found = []
        for node in self.live():
            with contextlib.suppress(redis.RedisError), self._client(node) as client:
                if client.info("replication").get("role") == "master":
                    found.append(node)
        return found

    def master_of(self, key: str) -> LocalRedis:
        """The live master serving ``key``'s slot."""
        for node in self.masters():
            with self._client(node) as client:
                slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
                if self._owns(client, slot):
                    return node
        raise ConfigurationError(f"no live master serves the slot of {key!r}")

    @staticmethod
    def _owns(client: redis.Redis, slot: int) -> bool:
        myself = client.execute_command("CLUSTER", "MYID")  # type: ignore[no-untyped-call]
        myid = myself.decode() if isinstance(myself, bytes) else str(myself)
        for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):  # type: ignore[no-untyped-call]
            node_id = master[2].decode() if isinstance(master[2], bytes) else str(master[2])
            if int(start) <= slot <= int(end) and node_id == myid:
                return True
        return False

    def wait_ok(self, timeout: float = CLUSTER_READY_TIMEOUT) -> None:
        """Until every live node says cluster_state:ok, ``masters`` masters serve every slot
        and each live replica's link to its master is up (ConfigurationError after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._ok():
                return
            time.sleep(0.05)
        raise ConfigurationError(f"the local cluster did not become ok within {timeout:g} s")

    def _ok(self) -> bool:
        try:
            masters = 0
            for node in self.live():
                with self._client(node) as client:
                    if b"cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
                        return False
                    replication = client.info("replication")
                    if replication.get("role") == "master":
                        masters += 1
                    elif replication.get("master_link_status") != "up":
                        return False
            return masters == self.masters_count
        except redis.RedisError:
            return False

    def flush(self) -> None:
        """FLUSHALL on every master (the replicas follow)."""
        for node in self.masters():
            with self._client(node) as client:
                client.flushall()

    def stop(self) -> None:
        """Stop every node and remove their directories. Idempotent."""
        for node in self.nodes:
            node.stop()
