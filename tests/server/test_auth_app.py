"""The dashboard's way in, on the real app (``create_app``) under uvicorn: log in, read with
the session cookie alone (as a browser's EventSource must), change something only with
the CSRF token, log out. Bearer access on a real ``orch serve`` process is
``test_access.py``'s; the whole matrix is ``test_auth.py``'s."""

from __future__ import annotations

import json

import httpx
import redis

from orchestrator import Orchestrator
from orchestrator.server.app import create_app
from orchestrator.server.auth import AuthConfig
from tests.redis_server import snapshot

from .test_auth import READ, TOKEN, assert_no_secret, assert_refusal, serving


def test_a_browser_session_on_the_real_app(app: Orchestrator, r: redis.Redis) -> None:
    queue = "auth-session"
    app.enqueue("m:f", queue=queue)
    api = create_app(app, auth=AuthConfig(token=TOKEN, read_token=READ))
    with serving(api) as base, httpx.Client(base_url=base, timeout=10) as browser:
        page = {"origin": base}  # what a browser sends from the dashboard's own page
        assert_refusal(browser.get(f"/api/v1/queues/{queue}", headers=page), 401, "NO_CREDENTIALS")
        login = browser.post("/api/v1/session", json={"token": TOKEN}, headers=page)
        assert login.status_code == 200 and login.json()["role"] == "full"
        assert_no_secret(login)
        csrf = {**page, "x-csrf-token": login.json()["csrf_token"]}
        assert browser.get(f"/api/v1/queues/{queue}", headers=page).json()["paused"] is False  # the cookie alone

        before = snapshot(r)
        assert_refusal(browser.post(f"/api/v1/queues/{queue}/pause", headers=page), 403, "CSRF_MISSING")
        forged = {**page, "x-csrf-token": "x" + login.json()["csrf_token"]}
        assert_refusal(browser.post(f"/api/v1/queues/{queue}/pause", headers=forged), 403, "CSRF_MISMATCH")
        assert snapshot(r) == before, "a refused request wrote something"
        assert browser.post(f"/api/v1/queues/{queue}/pause", headers=csrf).json()["paused"] is True
        assert app.queue(queue).is_paused()

        # The live event stream with the cookie and no header; a resume by a bearer client shows up
        # in it while it is open (the client's read timeout is the deadline).
        with browser.stream("GET", "/api/v1/events", params={"queue": queue}, headers=page) as stream:
            assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.iter_lines()
            assert next(lines).startswith(":")  # the stream's opening comment: it flows, unbuffered
            resumed = httpx.post(f"{base}/api/v1/queues/{queue}/resume", headers={"authorization": f"Bearer {TOKEN}"})
            assert resumed.status_code == 200
            events = (json.loads(line[5:]) for line in lines if line.startswith("data:"))
            assert next(e for e in events if e["event"] == "resumed")["queue"] == queue

        reader = httpx.post(f"{base}/api/v1/session", json={"token": READ}, headers=page)
        read_cookie = {"cookie": f"orch_session={reader.cookies['orch_session']}"}
        read_csrf = {**page, **read_cookie, "x-csrf-token": reader.json()["csrf_token"]}
        assert httpx.get(f"{base}/api/v1/queues/{queue}", headers=read_cookie).status_code == 200
        assert_refusal(httpx.post(f"{base}/api/v1/queues/{queue}/pause", headers=read_csrf), 403, "READ_ONLY")

        assert browser.delete("/api/v1/session", headers=page).status_code == 204
        assert_refusal(browser.get(f"/api/v1/queues/{queue}", headers=page), 401, "NO_CREDENTIALS")
        assert not app.queue(queue).is_paused()
