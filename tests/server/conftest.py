"""Real ``orch serve`` processes (uvicorn) on free ports, against the suite's private redis-server.

``serve(*args, env=...)`` starts one and waits until ``/healthz`` answers; ``Server.client``
is an httpx client on it. The long-lived servers (``api``, ``read_only``, ``app_server``)
are started once per module; tests keep apart by using queues of their own (``queue``),
since the database is emptied before each test.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from orchestrator.redis_local import LocalRedis, free_port
from tests.integration.procs import Proc, Procs, wait_for

SAMPLE_APP = "tests.integration.sample_tasks"
TOKEN = "full-token-Zq8Xw3Lp0Vb6"
READ_TOKEN = "read-token-Hk2Ty7Nm4Rc1"
TOKENS = {"ORCH_API_TOKEN": TOKEN, "ORCH_API_READ_TOKEN": READ_TOKEN}
BEARER = {"Authorization": f"Bearer {TOKEN}"}
_queues = itertools.count()


@dataclass
class Server:
    proc: Proc
    base_url: str
    headers: dict[str, str] = field(default_factory=dict)

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers=self.headers, timeout=10.0, **kwargs)  # type: ignore[arg-type]


Serve = Callable[..., Server]


def answers(url: str) -> bool:
    """The server answers 200 at ``url`` (False while it is starting)."""
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def serve(redis_server: LocalRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    """Start ``orch serve ARGS`` (env: extra environment, redis_url: another Redis) and wait until it answers."""
    logdir: Path = tmp_path_factory.mktemp("serve")
    procs = Procs(redis_server.url, logdir)
    count = itertools.count()

    def start(*args: str, env: dict[str, str] | None = None, redis_url: str | None = None,
              headers: dict[str, str] | None = None) -> Server:
        port = free_port()
        name = f"serve-{next(count)}"
        procs.redis_url = redis_url or redis_server.url
        proc = procs.start(name, ["serve", "--port", str(port), *args], env=env)
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: answers(base + "/healthz"), f"{name} to answer", 20, alive=[proc])
        return Server(proc, base, dict(headers or {}))

    yield start
    procs.close()


@pytest.fixture(scope="module")
def api(serve: Serve) -> Server:
    """A read-write server with tokens, without --app: any task name is taken."""
    return serve(env=TOKENS, headers=BEARER)


@pytest.fixture
def client(api: Server) -> Iterator[httpx.Client]:
    with api.client() as c:
        yield c


@pytest.fixture
def queue(request: pytest.FixtureRequest) -> str:
    """A queue name of this test's own (the servers' known-queue caches outlive a flushed database)."""
    return f"{re.sub(r'[^A-Za-z0-9_]', '_', request.node.name)[:50]}-{next(_queues)}"
