"""The web dashboard of ``orch serve`` over httpx, on real servers (uvicorn) and the suite's
redis-server: every page renders with the hooks the browser tests use, read-only access
shows no action at all, a missing task is a 404 page, a browser without a session is
sent to the login form, the static assets come from the package, and a mounted API keeps
its links under the mount."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from html.parser import HTMLParser

import httpx
import orjson
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount

from orchestrator import Orchestrator, Settings
from orchestrator.redis_local import LocalRedis, free_port
from orchestrator.script_calls import run
from orchestrator.server import create_app
from orchestrator.server.auth import AuthConfig
from tests.integration.procs import wait_for
from tests.integration.test_operator import beat, claim, complete

from .conftest import BEARER, READ_TOKEN, TOKEN, TOKENS, Serve, Server

HTML = {"Accept": "text/html,application/xhtml+xml"}
TRACEBACK = 'Traceback (most recent call last):\n  File "jobs.py", line 3, in send\nValueError: <b>boom</b>'
STATES = ("pending", "scheduled", "retrying", "running", "success", "failed", "cancelled")


class Hooks(HTMLParser):
    """The data-testid and data-action values of a page, and every element's attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.testids: list[str] = []
        self.actions: list[dict[str, str | None]] = []
        self.hidden: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("data-testid"):
            self.testids.append(str(found["data-testid"]))
            if "hidden" in found:
                self.hidden.add(str(found["data-testid"]))
        if "data-action" in found:
            self.actions.append(found)


def hooks(response: httpx.Response) -> Hooks:
    assert response.headers["content-type"].startswith("text/html"), response.text[:200]
    parsed = Hooks()
    parsed.feed(response.text)
    return parsed


@pytest.fixture(scope="module")
def open_server(serve: Serve) -> Server:
    """No token: open on loopback, every action shown."""
    return serve()


@pytest.fixture(scope="module")
def read_only_server(serve: Serve) -> Server:
    return serve("--read-only", env=TOKENS, headers=BEARER)


def failed_task(app: Orchestrator, queue: str) -> str:
    task_id = app.enqueue("jobs:send", ["a@example.com"], {"retry": True}, queue=queue, priority=3, key="k-1").id
    (lease,) = claim(app, 1, queue, worker="w-dash")
    error = orjson.dumps({"type": "ValueError", "message": "<b>boom</b>", "traceback": TRACEBACK})
    run(app.redis, app._scripts(queue).fail(lease.task_id, lease.token, error, mode="fatal"))
    return task_id


def test_overview_shows_every_queue_with_counts_paused_charts_and_feed(
    open_server: Server, app: Orchestrator, queue: str
) -> None:
    app.enqueue("jobs:send", queue=queue)
    failed_task(app, queue)
    app.queue(queue).pause()
    with open_server.client() as c:
        page = c.get("/", headers=HTML)
    assert page.status_code == 200
    found = hooks(page)
    assert {f"count-{queue}-{s}" for s in STATES} <= set(found.testids)
    assert f"paused-{queue}" in found.testids and f"paused-{queue}" not in found.hidden
    assert "feed" in found.testids
    counts = dict(re.findall(rf'data-testid="count-{re.escape(queue)}-(\w+)">(\d+)<', page.text))
    assert counts["pending"] == "1" and counts["failed"] == "1"
    assert page.text.count("<svg") == 3 and "Tasks per minute" in page.text
    assert found.actions == []  # the overview acts on nothing; queue pages do
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    app.queue(queue).resume()
    with open_server.client() as c:
        assert f"paused-{queue}" in hooks(c.get("/", headers=HTML)).hidden


def test_queue_page_tabs_actions_filter_search_and_cursor(open_server: Server, app: Orchestrator, queue: str) -> None:
    ids = [app.enqueue("jobs:send" if i % 2 else "jobs:other", queue=queue).id for i in range(5)]
    failed = failed_task(app, queue)
    with open_server.client() as c:
        page = c.get(f"/queues/{queue}", headers=HTML)
        found = hooks(page)
        assert {f"count-{queue}-{s}" for s in STATES} | {"day-charts"} <= set(found.testids)
        names = {a["data-action"] for a in found.actions}
        assert {"pause", "retry-failed", "purge", "cancel", "delete"} <= names
        assert {a["data-state"] for a in found.actions if a["data-action"] == "purge"} == {"failed", "done"}
        assert all(a["data-queue"] == queue for a in found.actions)
        assert set(ids) <= set(re.findall(r'data-task="(\w+)"', page.text))
        failed_page = c.get(f"/queues/{queue}", params={"state": "failed"}, headers=HTML)
        assert failed in failed_page.text and "ValueError" in failed_page.text
        assert [a["data-task"] for a in hooks(failed_page).actions if a["data-action"] == "retry"] == [failed]
        only = c.get(f"/queues/{queue}", params={"name": "jobs:other"}, headers=HTML).text
        assert ids[0] in only and ids[1] not in only
        searched = c.get(f"/queues/{queue}", params={"id": failed})
        assert searched.status_code == 303 and searched.headers["location"] == f"/queues/{queue}/tasks/{failed}"
        app.queue(queue).pause()
        paused = hooks(c.get(f"/queues/{queue}", headers=HTML))
        assert f"paused-{queue}" not in paused.hidden and "resume" in {a["data-action"] for a in paused.actions}
    with open_server.client() as c:  # 50 a page: the next page comes from the cursor
        for _ in range(50):
            app.enqueue("jobs:send", queue=queue)
        first = c.get(f"/queues/{queue}", headers=HTML).text
        cursor = re.search(r'data-testid="next-page"', first)
        assert cursor is not None
        link = re.search(r'href="([^"]+)" data-testid="next-page"', first)
        assert link is not None
        second = c.get(link.group(1).replace("&amp;", "&"), headers=HTML)
        assert second.status_code == 200 and "first-page" in hooks(second).testids
        rows = r'<tr data-task="(\w+)"'
        assert set(re.findall(rows, first)) & set(re.findall(rows, second.text)) == set()


def test_task_page_shows_arguments_error_traceback_and_attempts(
    open_server: Server, app: Orchestrator, queue: str
) -> None:
    failed = failed_task(app, queue)
    done = app.enqueue("jobs:send", queue=queue).id
    (lease,) = claim(app, 1, queue)
    run(app.redis, app._scripts(queue).progress(done, lease.token, "0.25", b'"<step>"', max_bytes=100))
    complete(app, lease)
    with open_server.client() as c:
        for path in (f"/tasks/{failed}", f"/queues/{queue}/tasks/{failed}"):
            page = c.get(path, headers=HTML)
            assert page.status_code == 200
            found = hooks(page)
            assert {"traceback", "attempt", "args", "kwargs", "priority"} <= set(found.testids)
            assert "&lt;b&gt;boom&lt;/b&gt;" in page.text and "<b>boom</b>" not in page.text  # escaped
            assert "File &#34;jobs.py&#34;, line 3" in page.text or 'File "jobs.py", line 3' in page.text
            assert "a@example.com" in page.text and "k-1" in page.text and "w-dash" in page.text
            assert {a["data-action"] for a in found.actions} == {"retry", "delete"}
        success = c.get(f"/tasks/{done}", headers=HTML)
        assert "result" in hooks(success).testids and "&#34;ok&#34;" in success.text
        assert re.search(r'data-testid="progress">\s*<meter min="0" max="1" value="0.25"></meter> 25%', success.text)
        assert "progress-data" in hooks(success).testids and "&lt;step&gt;" in success.text  # escaped
        assert {a["data-action"] for a in hooks(success).actions} == {"delete"}


def test_a_missing_task_or_queue_is_a_404_page(open_server: Server, queue: str, app: Orchestrator) -> None:
    app.enqueue("jobs:send", queue=queue)
    with open_server.client() as c:
        for path in ("/tasks/" + "0" * 32, f"/queues/{queue}/tasks/{'0' * 32}", "/queues/never-used-queue"):
            page = c.get(path, headers=HTML)
            assert page.status_code == 404, path
            assert "error" in hooks(page).testids and "Not found" in page.text
        bad = c.get(f"/queues/{queue}", params={"state": "nope"}, headers=HTML)
        assert bad.status_code == 400 and "unknown state" in bad.text


def test_workers_page(open_server: Server, app: Orchestrator, queue: str) -> None:
    app.enqueue("jobs:send", queue=queue)
    beat(app, "w-page", queue, host="host-7", pid="4242", pool="thread", concurrency="8", running="2",
         load="0.25", processed="31")
    with open_server.client() as c:
        page = c.get("/workers", headers=HTML)
    assert page.status_code == 200 and "worker" in hooks(page).testids
    row = page.text[page.text.index("w-page"):]
    for value in ("host-7", "4242", "thread", "25%", "31"):
        assert value in row[:2000], value


def test_schedules_page_lists_every_schedule_with_its_actions(
    open_server: Server, app: Orchestrator, queue: str
) -> None:
    app.schedule("nightly", "jobs:report", cron="30 2 * * *", tz="Europe/Paris", queue=queue, catch_up="all",
                 max_catch_up=3, overlap="skip")
    app.schedule("ping", "jobs:ping", every=10, queue=queue)
    app.pause_schedule("ping")
    with open_server.client() as c:
        page = c.get("/schedules", headers=HTML)
        assert page.status_code == 200 and "nav-schedules" in hooks(page).testids
        found = hooks(page)
        assert found.testids.count("schedule") == 2 and found.testids.count("schedule-paused") == 1
        nightly = page.text[page.text.index('data-schedule="nightly"'):page.text.index('data-schedule="ping"')]
        for shown in ("jobs:report", queue, "cron 30 2 * * * (Europe/Paris)", "all (≤ 3) · skip", "0 / 0 / 0"):
            assert shown in nightly, shown
        actions = {(a["data-action"], a["data-schedule"]) for a in found.actions}
        assert actions == {("schedule-pause", "nightly"), ("schedule-run-now", "nightly"),
                           ("schedule-resume", "ping"), ("schedule-run-now", "ping")}
        queue_page = hooks(c.get(f"/queues/{queue}", headers=HTML))  # the queue's own schedules
        assert "queue-schedules" in queue_page.testids and queue_page.testids.count("schedule") == 2
        app.remove_schedule("nightly")
        app.remove_schedule("ping")
        assert "no-schedules" in hooks(c.get("/schedules", headers=HTML)).testids


def test_read_only_pages_show_no_action(
    api: Server, read_only_server: Server, app: Orchestrator, queue: str
) -> None:
    failed = failed_task(app, queue)
    app.enqueue("jobs:send", queue=queue, delay=60)
    app.schedule("ro", "jobs:send", every=60, queue=queue)
    paths = ["/", f"/queues/{queue}", f"/queues/{queue}?state=failed", f"/queues/{queue}?state=scheduled",
             f"/tasks/{failed}", "/workers", "/schedules"]
    read_token = {"Authorization": f"Bearer {READ_TOKEN}"}
    for server, headers in ((api, read_token), (read_only_server, BEARER)):
        with httpx.Client(base_url=server.base_url, headers={**HTML, **headers}, timeout=10.0) as c:
            for path in paths:
                page = c.get(path)
                assert page.status_code == 200, path
                assert "data-action" not in page.text and 'data-testid="confirm"' not in page.text, path
                assert "read-only" in hooks(page).testids
    with api.client() as c:  # the full token does see them
        assert hooks(c.get(f"/queues/{queue}?state=failed", headers=HTML)).actions


def test_without_a_session_a_browser_goes_to_the_login_form(api: Server, queue: str, app: Orchestrator) -> None:
    app.enqueue("jobs:send", queue=queue)
    with httpx.Client(base_url=api.base_url, timeout=10.0) as c:
        page = c.get(f"/queues/{queue}", headers=HTML)
        assert page.status_code == 303 and page.headers["location"] == f"/login?next=/queues/{queue}"
        page = c.get(f"/queues/{queue}?state=failed&name=jobs:send", headers=HTML)  # back to the same tab and filter
        assert page.headers["location"] == f"/login?next=/queues/{queue}%3Fstate%3Dfailed%26name%3Djobs%3Asend"
        login = c.get(page.headers["location"], headers=HTML)
        assert f'data-next="/queues/{queue}?state=failed&amp;name=jobs:send"' in login.text
        assert c.get(f"/queues/{queue}").status_code == 401  # not a browser: the API's answer
        assert c.get("/api/v1/queues", headers=HTML).status_code == 401
        login = c.get("/login", params={"next": "//evil.example"}, headers=HTML)
        assert login.status_code == 200 and 'data-next="/"' in login.text
        assert {"token", "login"} <= set(hooks(login).testids)
        # Logging in as the form does gives a cookie; the pages then carry its CSRF token.
        session = c.post("/api/v1/session", json={"token": TOKEN}).json()
        page = c.get(f"/queues/{queue}", headers=HTML)
        assert page.status_code == 200 and f'data-csrf="{session["csrf_token"]}"' in page.text
        assert hooks(page).actions
        assert c.post(f"/api/v1/queues/{queue}/pause").status_code == 403  # no CSRF header
        assert c.post(f"/api/v1/queues/{queue}/pause", headers={"X-CSRF-Token": session["csrf_token"]}).json()[
            "paused"] is True


def test_static_assets_come_from_the_package(api: Server) -> None:
    with httpx.Client(base_url=api.base_url, timeout=10.0) as c:  # no credentials needed
        for path, kind in (("/static/dashboard.css", "text/css"), ("/static/dashboard.js", "javascript"),
                           ("/static/favicon.svg", "image/svg+xml")):
            answer = c.get(path)
            assert answer.status_code == 200 and kind in answer.headers["content-type"], path
        assert c.get("/static/nope.css").status_code == 404
        assert c.get("/static/%2e%2e/pages.py").status_code == 404  # nothing outside static/
        page = c.get("/login", headers=HTML).text
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing from elsewhere


@pytest.fixture(scope="module")
def mounted(redis_server: LocalRedis) -> Iterator[str]:
    """The API with its dashboard mounted at /orch in a user's own Starlette app, on uvicorn."""
    app = Orchestrator(settings=Settings(redis_url=redis_server.url))
    outer = Starlette(routes=[Mount("/orch", app=create_app(app, auth=AuthConfig(token=TOKEN)))])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(outer, host="127.0.0.1", port=port, log_config=None, lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, "the mounted app to start", 20)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
    app.close()


def test_mounted_in_a_users_app_its_links_stay_under_the_mount(mounted: str, app: Orchestrator, queue: str) -> None:
    task_id = app.enqueue("jobs:send", queue=queue).id
    with httpx.Client(base_url=mounted, timeout=10.0, headers=HTML) as c:
        login = c.get(f"/orch/queues/{queue}")
        assert login.status_code == 303 and login.headers["location"] == f"/orch/login?next=/queues/{queue}"
        assert c.post("/orch/api/v1/session", json={"token": TOKEN}).status_code == 200
        page = c.get(f"/orch/queues/{queue}")
        assert page.status_code == 200 and f'href="/orch/queues/{queue}/tasks/{task_id}"' in page.text
        assert 'href="/orch/static/dashboard.css"' in page.text and 'data-base="/orch"' in page.text
        assert not re.search(r'(href|src|action)="/(?!orch/)', page.text)
        assert c.get("/orch/static/dashboard.js").status_code == 200
        found = c.get(f"/orch/queues/{queue}", params={"id": task_id})
        assert found.headers["location"] == f"/orch/queues/{queue}/tasks/{task_id}"
