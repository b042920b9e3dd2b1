"""Who may do what on a real ``orch serve`` (the rules are ``auth.py``'s, tested in full in
``test_auth``): with ORCH_API_TOKEN / ORCH_API_READ_TOKEN, and open on loopback without
them; a refused request writes nothing; a non-loopback --host without a token exits 2."""

from __future__ import annotations

import httpx
import pytest
import redis
from click.testing import CliRunner

from orchestrator import Orchestrator
from orchestrator.cli import orch
from tests.redis_server import snapshot

from .conftest import READ_TOKEN, TOKEN, TOKENS, Serve, Server


@pytest.fixture(scope="module")
def open_server(serve: Serve) -> Server:
    return serve()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_tokens_decide_what_a_request_may_do(api: Server, app: Orchestrator, r: redis.Redis, queue: str) -> None:
    app.enqueue("m:f", queue=queue)
    tasks = f"{api.base_url}/api/v1/queues/{queue}/tasks"
    before = snapshot(r)
    nobody = httpx.post(tasks, json={"name": "m:f"})
    assert nobody.status_code == 401 and nobody.json()["error"]["code"]
    wrong = httpx.get(tasks, headers=bearer("nope-" + TOKEN))
    assert wrong.status_code == 401
    reader = httpx.post(tasks, json={"name": "m:f"}, headers=bearer(READ_TOKEN))
    assert reader.status_code == 403
    assert snapshot(r) == before, "a refused request wrote something"
    assert TOKEN not in nobody.text + wrong.text + reader.text and READ_TOKEN not in reader.text
    assert httpx.get(tasks, headers=bearer(READ_TOKEN)).json()["tasks"][0]["name"] == "m:f"
    assert httpx.post(tasks, json={"name": "m:f"}, headers=bearer(TOKEN)).status_code == 201
    for public in ("/healthz", "/readyz"):
        assert httpx.get(api.base_url + public).status_code == 200
    assert TOKEN not in api.proc.log() and READ_TOKEN not in api.proc.log()


def test_a_foreign_origin_is_refused_even_with_a_token(api: Server, queue: str) -> None:
    response = httpx.post(f"{api.base_url}/api/v1/queues/{queue}/tasks", json={"name": "m:f"},
                          headers={**bearer(TOKEN), "Origin": "http://evil.example"})
    assert response.status_code == 403


def test_open_on_loopback_checks_the_host(open_server: Server, queue: str) -> None:
    assert httpx.post(f"{open_server.base_url}/api/v1/queues/{queue}/tasks", json={"name": "m:f"}).status_code == 201
    rebound = httpx.get(f"{open_server.base_url}/api/v1/queues", headers={"Host": "rebind.example"})
    assert rebound.status_code == 403
    assert "open" in open_server.proc.log()  # it says so


def test_a_non_loopback_host_without_a_token_refuses_to_start() -> None:
    clean = {k: None for k in ("ORCH_API_TOKEN", "ORCH_API_READ_TOKEN")}
    result = CliRunner().invoke(orch, ["serve", "--host", "0.0.0.0"], env=clean)
    assert result.exit_code == 2 and "ORCH_API_TOKEN" in result.output and len(result.output.splitlines()) == 1
    result = CliRunner().invoke(orch, ["serve"], env={"ORCH_API_READ_TOKEN": READ_TOKEN, "ORCH_API_TOKEN": None})
    assert result.exit_code == 2 and "ORCH_API_TOKEN" in result.output
    assert TOKENS["ORCH_API_READ_TOKEN"] not in result.output
