"""Who may do what over HTTP (orchestrator/server/auth.py, session.py): the whole matrix on a
small FastAPI app built here (method x credentials x Host x Origin, with a token and open),
the session cookie and its CSRF token, public paths, mounting, check_bind, from_env, and
that no token value ever shows in a response or a log line."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from hypothesis import example, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.routing import Mount

with warnings.catch_warnings():  # starlette 1.x would rather have httpx2; httpx (installed) still works
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

from orchestrator.errors import ConfigurationError
from orchestrator.redis_local import free_port
from orchestrator.server.auth import AuthConfig, Refusal, RequestFacts, authorize, check_bind, install_auth
from orchestrator.server.session import issue_cookie, verify_cookie

TOKEN = "full-7Hq2vXk9PzL4mN8sR3tW"
READ = "read-Jd5fG1bC6yU0eA2oI9pQ"
BASE = "http://127.0.0.1:8000"
GOOD_HOST = "127.0.0.1:8000"
BAD_HOST = "rebind.example:8000"  # a DNS rebinding page: its name, our address
FOREIGN = "http://evil.example"


def build(config: AuthConfig) -> FastAPI:
    app = FastAPI()

    @app.get("/api/v1/queues")
    async def queues() -> dict[str, Any]:
        return {"queues": ["default"]}

    @app.post("/api/v1/queues/{queue}/purge")
    async def purge(queue: str) -> dict[str, Any]:
        return {"purged": 0, "queue": queue}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics")
    async def metrics() -> dict[str, str]:
        return {"metrics": "here"}

    @app.get("/api/v1/events")
    async def events() -> StreamingResponse:
        async def stream() -> AsyncIterator[bytes]:
            yield b"data: one\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    install_auth(app, config)
    return app


def log_in(client: TestClient, token: str) -> tuple[str, str]:
    """(cookie header value, csrf token) of a fresh session; the client keeps no cookie."""
    response = client.post("/api/v1/session", json={"token": token}, headers={"host": GOOD_HOST})
    assert response.status_code == 200, response.text
    cookie = response.cookies["orch_session"]
    client.cookies.clear()
    return f"orch_session={cookie}", response.json()["csrf_token"]


@pytest.fixture(scope="module")
def token_client() -> Iterator[TestClient]:
    with TestClient(build(AuthConfig(token=TOKEN, read_token=READ)), base_url=BASE) as client:
        yield client


@pytest.fixture(scope="module")
def hosts_client() -> Iterator[TestClient]:
    config = AuthConfig(token=TOKEN, read_token=READ, allowed_hosts=("orch.internal",))
    with TestClient(build(config), base_url=BASE) as client:
        yield client


@pytest.fixture(scope="module")
def open_client() -> Iterator[TestClient]:
    with TestClient(build(AuthConfig(open=True)), base_url=BASE) as client:
        yield client


@pytest.fixture(scope="module")
def sessions(token_client: TestClient) -> dict[str, tuple[str, str]]:
    return {"full": log_in(token_client, TOKEN), "read": log_in(token_client, READ)}


CREDENTIALS = ("none", "bad", "read", "full", "cookie", "cookie-no-csrf", "cookie-bad-csrf", "read-cookie")


def headers_for(credential: str, sessions: dict[str, tuple[str, str]]) -> dict[str, str]:
    full_cookie, full_csrf = sessions["full"]
    read_cookie, read_csrf = sessions["read"]
    return {
        "none": {},
        "bad": {"authorization": f"Bearer {TOKEN}x"},
        "read": {"authorization": f"Bearer {READ}"},
        "full": {"authorization": f"Bearer {TOKEN}"},
        "cookie": {"cookie": full_cookie, "x-csrf-token": full_csrf},
        "cookie-no-csrf": {"cookie": full_cookie},
        "cookie-bad-csrf": {"cookie": full_cookie, "x-csrf-token": read_csrf},
        "read-cookie": {"cookie": read_cookie, "x-csrf-token": read_csrf},
    }[credential]


def expected(mode: str, method: str, credential: str, host: str, origin: str) -> tuple[int, str | None]:
    """The rules of the issue, written out as a table walk (not by calling the code)."""
    if host == "bad" and mode in ("open", "hosts"):
        return 403, "BAD_HOST"
    if origin == "foreign":
        return 403, "BAD_ORIGIN"
    if mode == "open":  # a browser's change (Origin sent) needs the process's CSRF token, which none sends here
        if method == "POST" and origin == "same":
            sent = credential in ("cookie", "cookie-bad-csrf", "read-cookie")  # a session's token, not the process's
            return 403, "CSRF_MISMATCH" if sent else "CSRF_MISSING"
        return 200, None
    if credential == "none":
        return 401, "NO_CREDENTIALS"
    if credential == "bad":
        return 401, "BAD_CREDENTIALS"
    if method == "GET":
        return 200, None
    if credential in ("read", "read-cookie"):
        return 403, "READ_ONLY"
    if credential == "cookie-no-csrf":
        return 403, "CSRF_MISSING"
    if credential == "cookie-bad-csrf":
        return 403, "CSRF_MISMATCH"
    return 200, None


@pytest.mark.parametrize("mode", ["token", "hosts", "open"])
@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("credential", CREDENTIALS)
@pytest.mark.parametrize("host", ["good", "bad"])
@pytest.mark.parametrize("origin", ["absent", "same", "foreign"])
def test_matrix(
    request: pytest.FixtureRequest,
    sessions: dict[str, tuple[str, str]],
    mode: str,
    method: str,
    credential: str,
    host: str,
    origin: str,
) -> None:
    client: TestClient = request.getfixturevalue(f"{mode}_client")
    headers = {"host": GOOD_HOST if host == "good" else BAD_HOST, **headers_for(credential, sessions)}
    if origin != "absent":
        headers["origin"] = FOREIGN if origin == "foreign" else f"http://{headers['host']}"
    path = "/api/v1/queues" if method == "GET" else "/api/v1/queues/default/purge"
    response = client.request(method, path, headers=headers)
    status, code = expected(mode, method, credential, host, origin)
    assert response.status_code == status, response.text
    if code is None:
        assert "error" not in response.json()
    else:
        assert_refusal(response, status, code)


def assert_refusal(response: Any, status: int, code: str) -> None:
    """One JSON line {"error": {"code", "message"}}, no token in it, 401s say Bearer."""
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert "\n" not in response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code and body["error"]["message"]
    assert (response.headers.get("www-authenticate") == 'Bearer realm="orch"') == (status == 401)
    assert_no_secret(response)


def assert_no_secret(response: Any) -> None:
    shown = response.text + json.dumps(dict(response.headers))
    for secret in (TOKEN, READ):
        assert secret not in shown


def test_loopback_names_and_ports_when_open(open_client: TestClient) -> None:
    for host in ("localhost:8000", "127.0.0.1:8000", "127.5.6.7:8000", "app.localhost:8000", "LOCALHOST:8000"):
        assert open_client.get("/api/v1/queues", headers={"host": host}).status_code == 200, host
    for host in ("localhost:9999", "localhost", "127.0.0.1.nip.io:8000", "10.0.0.1:8000", "localhost:", "[::1"):
        assert_refusal(open_client.get("/api/v1/queues", headers={"host": host}), 403, "BAD_HOST")
    config = AuthConfig(open=True)
    with TestClient(build(config), base_url="http://[::1]:8000") as client:
        assert client.get("/api/v1/queues").status_code == 200
        same = {"origin": "http://[::1]:8000", "x-csrf-token": config.open_csrf}
        assert client.post("/api/v1/queues/q/purge", headers=same).status_code == 200


def test_open_mode_changes_from_a_browser_carry_the_process_csrf_token() -> None:
    config, other = AuthConfig(open=True), AuthConfig(open=True)
    assert config.open_csrf != other.open_csrf and config.open_csrf not in repr(config)
    with TestClient(build(config), base_url=BASE) as client:
        purge = "/api/v1/queues/q/purge"
        assert client.post(purge).status_code == 200  # curl: no Origin, no Sec-Fetch-Site
        own = {"origin": BASE}
        assert_refusal(client.post(purge, headers=own), 403, "CSRF_MISSING")
        assert_refusal(client.post(purge, headers={"sec-fetch-site": "same-origin"}), 403, "CSRF_MISSING")
        assert_refusal(client.post(purge, headers={**own, "x-csrf-token": other.open_csrf}), 403, "CSRF_MISMATCH")
        assert client.post(purge, headers={**own, "x-csrf-token": config.open_csrf}).status_code == 200
        assert client.get("/api/v1/queues", headers=own).status_code == 200  # reads need none


def test_public_paths_need_no_token_but_host_still_counts(token_client: TestClient, open_client: TestClient) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        assert token_client.get(path).status_code == 200
        assert token_client.head(path).status_code in (200, 405)  # HEAD: the route's business
        assert_refusal(open_client.get(path, headers={"host": BAD_HOST}), 403, "BAD_HOST")
        assert_refusal(token_client.get(path, headers={"origin": FOREIGN}), 403, "BAD_ORIGIN")
    assert_refusal(token_client.post("/healthz"), 401, "NO_CREDENTIALS")  # only reads are public


def test_metrics_may_need_the_read_token() -> None:
    with TestClient(build(AuthConfig(token=TOKEN, read_token=READ, metrics_need_token=True)), base_url=BASE) as c:
        assert_refusal(c.get("/metrics"), 401, "NO_CREDENTIALS")
        assert c.get("/metrics", headers={"authorization": f"Bearer {READ}"}).status_code == 200
        assert c.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert c.get("/healthz").status_code == 200


def test_malformed_credentials(token_client: TestClient, sessions: dict[str, tuple[str, str]]) -> None:
    for value in (f"Basic {TOKEN}", "Bearer", "Bearer ", TOKEN, f"Bearer {TOKEN[:-1]}", f"Bearer {READ} {TOKEN}"):
        assert_refusal(token_client.get("/api/v1/queues", headers={"authorization": value}), 401, "BAD_CREDENTIALS")
    assert token_client.get("/api/v1/queues", headers={"authorization": f"bearer  {TOKEN}"}).status_code == 200
    cookie, _ = sessions["full"]
    # a bad bearer is refused even beside a good cookie: the header is what was asked for
    both = {"authorization": f"Bearer {TOKEN}x", "cookie": cookie}
    assert_refusal(token_client.get("/api/v1/queues", headers=both), 401, "BAD_CREDENTIALS")
    role, expires, nonce, signature = cookie.removeprefix("orch_session=").split(".")
    for forged in (
        f"full.{expires}.{nonce}.{signature[:-2]}AA",
        f"full.{int(expires) + 9999}.{nonce}.{signature}",  # a longer life is a new signature
        f"read.{expires}.{nonce}.{signature}",
        "full.1.2",
        "full.\u00b2.a.b",  # a digit to str.isdigit, not to int() nor to ASCII
        "garbage",
    ):
        headers = {"cookie": f"orch_session={forged}".encode("latin-1")}  # as a browser may send it
        assert_refusal(token_client.get("/api/v1/queues", headers=headers), 401, "BAD_CREDENTIALS")
    assert role == "full"


def test_cookie_expires_and_dies_with_its_token() -> None:
    config = AuthConfig(token=TOKEN, read_token=READ, session_ttl=60)
    value, session = issue_cookie(config, "full", now=1000.0)
    assert verify_cookie(config, value, now=1059.0) == session
    assert verify_cookie(config, value, now=1060.0) is None
    assert verify_cookie(AuthConfig(token=TOKEN + "2"), value, now=1001.0) is None
    read_value, _ = issue_cookie(config, "read", now=1000.0)
    assert verify_cookie(AuthConfig(token=TOKEN), read_value, now=1001.0) is None  # read token gone


def test_login_and_session_routes(token_client: TestClient) -> None:
    refused = token_client.post("/api/v1/session", json={"token": TOKEN + "x"})
    assert_refusal(refused, 401, "BAD_CREDENTIALS")
    assert "set-cookie" not in refused.headers
    for body in (b"{", b"[]", b'{"tokn": "x"}', b'{"token": 5}', b""):
        bad = token_client.post("/api/v1/session", content=body, headers={"content-type": "application/json"})
        assert_refusal(bad, 401, "BAD_CREDENTIALS")
    # login from another site: refused before the token is even looked at
    foreign = token_client.post("/api/v1/session", json={"token": TOKEN}, headers={"origin": FOREIGN})
    assert_refusal(foreign, 403, "BAD_ORIGIN")

    response = token_client.post("/api/v1/session", json={"token": TOKEN}, headers={"origin": BASE})
    token_client.cookies.clear()
    assert response.status_code == 200
    info = response.json()
    assert info["role"] == "full" and info["via"] == "cookie" and info["csrf_token"]
    assert info["expires_at"] > time.time()
    set_cookie = response.headers["set-cookie"].lower()
    for attribute in ("httponly", "samesite=strict", "path=/", "max-age=43200"):
        assert attribute in set_cookie
    assert "secure" not in set_cookie  # plain http on loopback: a Secure cookie would be dropped
    assert response.headers["cache-control"] == "no-store"
    assert_no_secret(response)

    cookie = {"cookie": f"orch_session={response.cookies['orch_session']}"}
    again = token_client.get("/api/v1/session", headers=cookie).json()
    assert again == info  # a reloaded page gets its CSRF token back
    bearer = token_client.get("/api/v1/session", headers={"authorization": f"Bearer {READ}"}).json()
    assert bearer == {"role": "read", "via": "bearer", "csrf_token": None, "expires_at": None}
    assert_refusal(token_client.get("/api/v1/session"), 401, "NO_CREDENTIALS")

    out = token_client.delete("/api/v1/session", headers=cookie)
    assert out.status_code == 204
    assert 'orch_session=""' in out.headers["set-cookie"] and "max-age=0" in out.headers["set-cookie"].lower()


def test_login_over_https_sets_a_secure_cookie() -> None:
    with TestClient(build(AuthConfig(token=TOKEN)), base_url="https://orch.example.com") as client:
        response = client.post("/api/v1/session", json={"token": TOKEN})
        assert "secure" in response.headers["set-cookie"].lower()
        cookie = {"cookie": f"orch_session={response.cookies['orch_session']}"}
        client.cookies.clear()
        csrf = {"x-csrf-token": response.json()["csrf_token"], "origin": "https://orch.example.com"}
        assert client.post("/api/v1/queues/q/purge", headers={**cookie, **csrf}).status_code == 200
        assert_refusal(
            client.post("/api/v1/queues/q/purge", headers={**cookie, **csrf, "origin": "http://orch.example.com"}),
            403,
            "BAD_ORIGIN",
        )


def test_open_login_says_open(open_client: TestClient) -> None:
    response = open_client.post("/api/v1/session", json={"token": "anything"})
    assert response.json() == {"role": "full", "via": "open", "csrf_token": None, "expires_at": None}
    assert "set-cookie" not in response.headers
    assert open_client.get("/api/v1/session").json()["via"] == "open"


def test_cross_site_fetch_without_origin_and_null_origin(open_client: TestClient, token_client: TestClient) -> None:
    for client in (open_client, token_client):
        headers = {"sec-fetch-site": "cross-site", "authorization": f"Bearer {TOKEN}"}
        assert_refusal(client.get("/api/v1/queues", headers=headers), 403, "BAD_ORIGIN")
        assert_refusal(client.post("/api/v1/queues/q/purge", headers={**headers, "origin": "null"}), 403, "BAD_ORIGIN")
        same = {"sec-fetch-site": "same-origin", "authorization": f"Bearer {TOKEN}"}
        assert client.get("/api/v1/queues", headers=same).status_code == 200


def test_allowed_hosts_and_origins() -> None:
    config = AuthConfig(open=True, allowed_hosts=("orch.lan",), allowed_origins=("https://dash.example.com",))
    with TestClient(build(config), base_url=BASE) as client:
        assert client.get("/api/v1/queues", headers={"host": "ORCH.lan:1234"}).status_code == 200
        assert client.post("/api/v1/queues/q/purge", headers={"origin": "https://dash.example.com"}).status_code == 200
        other_port = client.get("/api/v1/queues", headers={"origin": "https://dash.example.com:444"})
        assert_refusal(other_port, 403, "BAD_ORIGIN")
    with TestClient(build(AuthConfig(open=True, allowed_hosts=("*",), allowed_origins=("*",))), base_url=BASE) as c:
        assert c.post("/api/v1/queues/q/purge", headers={"host": BAD_HOST, "origin": FOREIGN}).status_code == 200


def test_no_host_header_is_refused_when_open() -> None:
    facts = RequestFacts(method="GET", path="/api/v1/queues", server_port=8000)
    refusal = authorize(AuthConfig(open=True), facts)
    assert isinstance(refusal, Refusal) and refusal.code == "BAD_HOST" and "no Host header" in refusal.message
    bearer = RequestFacts("GET", "/api/v1/queues", authorization=f"Bearer {TOKEN}")
    with_token = authorize(AuthConfig(token=TOKEN), bearer)
    assert not isinstance(with_token, Refusal)


def test_a_server_sent_event_stream_is_not_buffered(token_client: TestClient) -> None:
    with token_client.stream("GET", "/api/v1/events", headers={"authorization": f"Bearer {READ}"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.read() == b"data: one\n\n"


def test_mounted_in_a_users_app_needs_a_token_or_open() -> None:
    with pytest.raises(ConfigurationError) as refused:
        AuthConfig()
    assert refused.value.code == "TOKEN_REQUIRED" and "open=True" in str(refused.value)
    inner = build(AuthConfig(token=TOKEN))
    outer = Starlette(routes=[Mount("/orch", app=inner)])
    with TestClient(outer, base_url=BASE) as client:
        assert client.get("/orch/healthz").status_code == 200
        assert_refusal(client.get("/orch/api/v1/queues"), 401, "NO_CREDENTIALS")
        assert client.get("/orch/api/v1/queues", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200
        login = client.post("/orch/api/v1/session", json={"token": TOKEN})
        client.cookies.clear()
        assert "path=/orch" in login.headers["set-cookie"].lower()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"token": TOKEN, "open": True}, "open"),
        ({"read_token": READ, "open": True}, "read_token"),
        ({"token": TOKEN, "read_token": TOKEN}, "read_token"),
        ({"token": "has space"}, "token"),
        ({"token": ""}, "token"),
        ({"token": "caf\u00e9-token"}, "token"),
        ({"token": TOKEN, "session_ttl": 0}, "session_ttl"),
        ({"token": TOKEN, "cookie_name": "a;b"}, "cookie_name"),
        ({"token": TOKEN, "allowed_hosts": ("host:80",)}, "allowed_hosts"),
        ({"token": TOKEN, "allowed_origins": ("example.com",)}, "allowed_origins"),
        ({"token": TOKEN, "public_paths": ("static/",)}, "public_paths"),
    ],
)
def test_config_refusals(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        AuthConfig(**kwargs)
    assert refused.value.field == field
    assert TOKEN not in str(refused.value) and READ not in str(refused.value)


def test_config_never_shows_its_tokens() -> None:
    config = AuthConfig(token=TOKEN, read_token=READ)
    assert TOKEN not in repr(config) and READ not in repr(config) and TOKEN not in str(config)


def test_from_env() -> None:
    assert AuthConfig.from_env({}).open
    assert AuthConfig.from_env({"ORCH_API_TOKEN": "", "ORCH_API_READ_TOKEN": ""}).open
    config = AuthConfig.from_env({"ORCH_API_TOKEN": TOKEN, "ORCH_API_READ_TOKEN": READ}, metrics_need_token=True)
    assert (config.token, config.read_token, config.open, config.metrics_need_token) == (TOKEN, READ, False, True)
    for env, field in (
        ({"ORCH_API_READ_TOKEN": READ}, "ORCH_API_READ_TOKEN"),
        ({"ORCH_API_TOKEN": TOKEN, "ORCH_API_READ_TOKEN": TOKEN}, "ORCH_API_READ_TOKEN"),
        ({"ORCH_API_TOKEN": f"{TOKEN}\n"}, "ORCH_API_TOKEN"),
    ):
        with pytest.raises(ConfigurationError) as refused:
            AuthConfig.from_env(env)
        assert refused.value.field == field and TOKEN not in str(refused.value) and READ not in str(refused.value)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"])
def test_check_bind_loopback_needs_no_token(host: str) -> None:
    check_bind(host, AuthConfig(open=True))


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "192.168.1.5", "orch.example.com"])
def test_check_bind_elsewhere_needs_a_token(host: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        check_bind(host, AuthConfig(open=True))
    assert refused.value.code == "TOKEN_REQUIRED" and refused.value.field == "host"
    assert "ORCH_API_TOKEN" in str(refused.value) and "\n" not in str(refused.value)
    check_bind(host, AuthConfig(token=TOKEN))


ROUTES = (("GET", "/api/v1/queues"), ("POST", "/api/v1/queues/q/purge"), ("GET", "/api/v1/session"))


def test_no_token_in_any_log_line_or_answer(
    caplog: pytest.LogCaptureFixture, sessions: dict[str, tuple[str, str]]
) -> None:
    caplog.set_level(logging.DEBUG)
    with TestClient(build(AuthConfig(token=TOKEN, read_token=READ)), base_url=BASE) as client:
        responses = [
            client.post("/api/v1/session", json={"token": TOKEN}),
            client.post("/api/v1/session", json={"token": READ}),
            client.post("/api/v1/session", json={"token": TOKEN + "x"}),
            client.post("/api/v1/session", content=f'{{"tokn": "{TOKEN}"}}'.encode()),
            client.post("/api/v1/session", content=TOKEN.encode()),
        ]
        client.cookies.clear()
        for credential in CREDENTIALS:
            for method, path in ROUTES:
                headers = headers_for(credential, sessions)
                responses.append(client.request(method, path, headers=headers))
                responses.append(client.request(method, path, headers={**headers, "host": BAD_HOST, "origin": FOREIGN}))
        responses.append(client.get("/api/v1/queues", headers={"authorization": f"Bearer {TOKEN[:-3]}"}))
    assert {r.status_code for r in responses} >= {200, 401, 403}
    for response in responses:
        assert_no_secret(response)
    assert "refused" in caplog.text  # refusals are logged...
    assert TOKEN not in caplog.text and READ not in caplog.text  # ...without a token
    assert TOKEN[:-3] not in caplog.text


def test_open_mode_warns(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="orchestrator.server.auth")
    build(AuthConfig(open=True))
    assert "no API token" in caplog.text and "loopback" in caplog.text
    caplog.clear()
    build(AuthConfig(token=TOKEN))
    assert caplog.text == ""


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """``app`` on a real uvicorn in a thread, on a free loopback port: its base URL."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning", lifespan="off", ws="none")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(10)


def test_under_uvicorn_an_event_stream_flows_through_unbuffered() -> None:
    """The first event reaches the client while the stream is still open: a buffering
    middleware would hold it until the stream ends, which here waits for the client."""
    release = threading.Event()
    config = AuthConfig(open=True)
    app = build(config)

    @app.get("/api/v1/test-stream")
    async def test_stream() -> StreamingResponse:
        async def stream() -> AsyncIterator[bytes]:
            yield b"data: first\n\n"
            deadline = time.monotonic() + 10
            while not release.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            yield b"data: last\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    with serving(app) as base, httpx.Client(base_url=base, timeout=5) as client:
        port = base.rsplit(":", 1)[1]
        with client.stream("GET", "/api/v1/test-stream") as response:
            assert response.status_code == 200
            chunks = response.iter_bytes()
            started = time.monotonic()
            assert next(chunks) == b"data: first\n\n"
            assert time.monotonic() - started < 5
            release.set()
            assert b"".join(chunks) == b"data: last\n\n"
        # the real Host and port checks, as a browser would send them
        assert client.get("/api/v1/queues", headers={"host": f"localhost:{port}"}).status_code == 200
        rebound = client.get("/api/v1/queues", headers={"host": f"rebind.example:{port}"})
        assert_refusal(rebound, 403, "BAD_HOST")
        assert_refusal(client.post("/api/v1/queues/q/purge", headers={"origin": FOREIGN}), 403, "BAD_ORIGIN")
        own = {"origin": base, "x-csrf-token": config.open_csrf}
        assert client.post("/api/v1/queues/q/purge", headers=own).status_code == 200


header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=60)


@settings(max_examples=300, deadline=None)
@given(
    method=st.sampled_from(["GET", "HEAD", "POST", "DELETE", "OPTIONS"]),
    path=st.sampled_from(["/", "/healthz", "/metrics", "/api/v1/session", "/api/v1/queues", "/static/x"]),
    host=st.none() | header_text | st.sampled_from(["127.0.0.1:8000", "[::1]:8000", "[::1", "a:b:c", ":80"]),
    origin=st.none() | header_text | st.sampled_from(["null", "http://127.0.0.1:8000", "http://[::1", "http://a:x"]),
    authorization=st.none() | header_text | st.just(f"Bearer {TOKEN}"),
    cookie=st.none() | header_text.map(lambda text: f"orch_session={text}") | st.just("orch_session=full.\u00b2.a.b"),
    csrf=st.none() | header_text,
    open_=st.booleans(),
)
@example("GET", "/", None, None, None, "orch_session=full.\u00b2.a.b", None, False)
@example("GET", "/", "localhost:\u00b2", None, None, None, None, True)
def test_any_header_values_get_an_answer_not_an_exception(
    method: str,
    path: str,
    host: str | None,
    origin: str | None,
    authorization: str | None,
    cookie: str | None,
    csrf: str | None,
    open_: bool,
) -> None:
    config = AuthConfig(open=True) if open_ else AuthConfig(token=TOKEN, read_token=READ, public_paths=("/static/",))
    facts = RequestFacts(method, path, "http", 8000, host, origin, None, authorization, cookie, csrf)
    decision = authorize(config, facts)
    if isinstance(decision, Refusal):
        assert decision.status in (401, 403) and TOKEN not in decision.message and "\n" not in decision.message
