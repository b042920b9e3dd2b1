"""Issue #14's browser scenarios: the dashboard in headless chromium, with real processes behind it.

Two ``orch worker`` processes and an ``orch scheduler`` run the sample tasks on the suite's
redis-server while ``orch serve`` answers the browser (``conftest.py``). Each test has a
queue of its own and waits on what the page shows (Playwright's ``expect``, with a
deadline), never on a sleep; every page fails its test on a console error.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

from orchestrator import Orchestrator
from tests.integration.procs import wait_for
from tests.server.conftest import READ_TOKEN, TOKEN, Server

from .conftest import Console, Pages, Stack, shot

pytestmark = pytest.mark.slow  # about 45 s in all: real processes, a browser, the pages' 2 s refresh
FORBIDDEN = r"status of 403"  # chromium's console line for a refused fetch, expected where a test forges one


def enqueue(orch: Orchestrator, queue: str, name: str, *args: Any, n: int = 1, **options: Any) -> list[str]:
    return [orch.enqueue(name, list(args), queue=queue, **options).id for _ in range(n)]


def state_of(orch: Orchestrator, queue: str, task_id: str) -> str:
    info = orch.queue(queue).task(task_id)
    return info.state.value.lower() if info.state else ""


def wait_states(orch: Orchestrator, queue: str, task_ids: list[str], state: str, stack: Stack) -> None:
    wait_for(lambda: all(state_of(orch, queue, t) == state for t in task_ids), f"{len(task_ids)} tasks {state}",
             30, alive=stack.procs.started)


def count(page: Page, queue: str, state: str) -> Locator:
    return page.get_by_test_id(f"count-{queue}-{state}")


def sign_in(page: Page, token: str, then: str = "/") -> None:
    """The login form: a page asked for without a session goes there first, then back."""
    page.goto(then)
    expect(page).to_have_url(re.compile(r"/login"))
    page.get_by_test_id("token").fill(token)
    page.get_by_test_id("login").click()
    expect(page).not_to_have_url(re.compile(r"/login"))


def test_overview_counts_change_while_tasks_run(pages: Pages, dash: Server, orch: Orchestrator, stack: Stack) -> None:
    queue = orch.queue("counts")
    queue.pause()  # held until the page shows them pending
    ids = enqueue(orch, "counts", "tests:sleep", 1.0, n=8)
    page = pages.new(dash)
    sign_in(page, TOKEN)
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(count(page, "counts", "pending")).to_have_text("8")
    expect(count(page, "counts", "running")).to_have_text("0")
    expect(page.get_by_test_id("paused-counts")).to_be_visible()

    queue.resume()  # from outside the page: the page must notice on its own, without a reload
    expect(page.get_by_test_id("paused-counts")).to_be_hidden()
    expect(count(page, "counts", "running")).not_to_have_text("0")  # 4 slots, 8 tasks of 1 s
    expect(count(page, "counts", "success")).to_have_text("8")
    expect(count(page, "counts", "pending")).to_have_text("0")
    expect(count(page, "counts", "running")).to_have_text("0")
    expect(page.get_by_test_id("feed").locator("li").first).to_be_visible()  # the live feed saw them
    expect(page.get_by_test_id("feed-status")).to_have_text("live")
    assert {state_of(orch, "counts", t) for t in ids} == {"success"}


def test_a_failed_tasks_page_shows_its_traceback(pages: Pages, dash: Server, orch: Orchestrator, stack: Stack) -> None:
    [task_id] = enqueue(orch, "failures", "tests:always_fail", max_retries=1)
    wait_states(orch, "failures", [task_id], "failed", stack)
    page = pages.new(dash)
    sign_in(page, TOKEN)
    count(page, "failures", "failed").click()  # overview -> the queue's failed tab -> the task
    expect(page.get_by_test_id("tab-failed")).to_have_attribute("aria-current", "page")
    page.get_by_role("link", name=task_id).click()
    expect(page.get_by_test_id("task-state")).to_have_text("failed")
    expect(page.get_by_test_id("error")).to_have_text("ValueError: always fails")
    traceback = page.get_by_test_id("traceback")
    expect(traceback).to_contain_text("Traceback")
    expect(traceback).to_contain_text("in always_fail")
    expect(traceback).to_contain_text("ValueError: always fails")
    attempts = page.get_by_test_id("attempt")
    expect(attempts).to_have_count(2)
    expect(attempts.nth(0)).to_contain_text("retried")
    expect(attempts.nth(1)).to_contain_text("failed")
    expect(attempts.nth(1)).to_contain_text("browser-w")  # the worker that ran it


def test_retry_all_failed_asks_then_the_tasks_succeed(
    pages: Pages, dash: Server, orch: Orchestrator, stack: Stack
) -> None:
    ids = [orch.enqueue("tests:fail_once", [f"retries-{i}"], queue="retries", max_retries=0).id for i in range(3)]
    wait_states(orch, "retries", ids, "failed", stack)
    page = pages.new(dash)
    sign_in(page, TOKEN, "/queues/retries")
    page.goto("/queues/retries?state=failed")  # (the login form's return keeps the path, not the query)
    expect(count(page, "retries", "failed")).to_have_text("3")
    expect(page.get_by_test_id("tasks").locator("tbody tr")).to_have_count(3)

    dialog = page.get_by_test_id("confirm")
    page.locator('[data-action="retry-failed"]').click()
    expect(dialog).to_be_visible()
    expect(page.get_by_test_id("confirm-message")).to_contain_text("Retry 3 failed tasks")
    page.get_by_test_id("confirm-no").click()  # saying no changes nothing
    expect(dialog).to_be_hidden()
    assert orch.queue("retries").counts()["failed"] == 3

    page.locator('[data-action="retry-failed"]').click()
    expect(dialog).to_be_visible()
    page.get_by_test_id("confirm-yes").click()
    expect(count(page, "retries", "success")).to_have_text("3")
    expect(count(page, "retries", "failed")).to_have_text("0")
    assert {state_of(orch, "retries", t) for t in ids} == {"success"}


def test_pausing_a_queue_stops_claims_and_the_page_says_so(
    pages: Pages, open_dash: Server, orch: Orchestrator, stack: Stack
) -> None:
    """On the server without a token (a developer's machine): no login, every action open."""
    page = pages.new(open_dash)
    page.goto("/queues/pausing")
    badge = page.get_by_test_id("paused-pausing")
    expect(badge).to_be_hidden()
    page.locator('[data-action="pause"]').click()
    expect(badge).to_be_visible()
    expect(page.locator('[data-action="resume"]')).to_be_visible()
    assert orch.queue("pausing").is_paused()

    [held] = enqueue(orch, "pausing", "tests:add", 1, 2)
    [probe] = enqueue(orch, "counts", "tests:add", 3, 4)  # the same workers claim, from the other queue
    wait_states(orch, "counts", [probe], "success", stack)
    assert state_of(orch, "pausing", held) == "pending"
    expect(count(page, "pausing", "pending")).to_have_text("1")
    page.goto("/")
    expect(page.get_by_test_id("paused-pausing")).to_be_visible()
    page.goto("/queues/pausing")

    page.locator('[data-action="resume"]').click()
    expect(badge).to_be_hidden()
    expect(count(page, "pausing", "success")).to_have_text("1")
    assert state_of(orch, "pausing", held) == "success"


FORGE = """async ([path, csrf]) => {
  const headers = {"Content-Type": "application/json"};
  if (csrf) headers["X-CSRF-Token"] = csrf;
  const reply = await fetch(path, {method: "POST", headers, credentials: "same-origin", body: "{}"});
  return [reply.status, await reply.text()];
}"""


def forge(page: Page, path: str, csrf: str | None = None) -> tuple[int, str]:
    status, text = page.evaluate(FORGE, [path, csrf])
    return int(status), str(text)


def test_a_read_only_token_sees_no_buttons_and_forged_posts_are_refused(
    pages: Pages, console: Console, dash: Server, orch: Orchestrator, stack: Stack
) -> None:
    console.allow(FORBIDDEN)
    [task_id] = enqueue(orch, "reading", "tests:always_fail", max_retries=0)
    wait_states(orch, "reading", [task_id], "failed", stack)

    full = pages.new(dash, "full")
    sign_in(full, TOKEN, f"/tasks/{task_id}")
    expect(full.locator('[data-action="retry"]')).to_be_visible()  # the same page with the full token acts

    page = pages.new(dash, "read")
    sign_in(page, READ_TOKEN)
    for path in ("/", "/workers", "/queues/reading?state=failed", f"/tasks/{task_id}"):
        page.goto(path)
        expect(page.get_by_test_id("read-only")).to_be_visible()
        expect(page.locator("main")).not_to_be_empty()
        expect(page.locator("[data-action]")).to_have_count(0)
        expect(page.get_by_test_id("confirm")).to_have_count(0)
    expect(page.get_by_test_id("traceback")).to_contain_text("ValueError: always fails")  # reading still works

    # Forged from the page: the read session may not change anything, CSRF header or not.
    status, text = forge(page, "/api/v1/queues/reading/retry-failed")
    assert status == 403 and "READ_ONLY" in text, text
    status, text = forge(page, "/api/v1/queues/reading/pause")
    assert status == 403 and "READ_ONLY" in text, text
    # A full session without its CSRF token, or with another one, is refused too.
    status, text = forge(full, "/api/v1/queues/reading/pause")
    assert status == 403 and "CSRF_MISSING" in text, text
    status, text = forge(full, "/api/v1/queues/reading/pause", "not-the-token")
    assert status == 403 and "CSRF_MISMATCH" in text, text
    assert not orch.queue("reading").is_paused()
    assert state_of(orch, "reading", task_id) == "failed"
    # And the page's own token passes (the refusals above were for the reasons given).
    csrf = full.locator("body").get_attribute("data-csrf")
    assert csrf
    status, text = forge(full, f"/api/v1/queues/reading/tasks/{task_id}/retry", csrf)
    assert status == 200, text


def test_a_schedule_is_paused_resumed_and_run_now_from_its_page(
    pages: Pages, open_dash: Server, orch: Orchestrator, stack: Stack
) -> None:
    """The schedules page (docs/dashboard-schedules.png): the scheduler fires ``every=1``
    while the page shows it; Pause, Run now and Resume act through the API."""
    orch.schedule("heartbeat", "tests:add", every=1, args=[1, 2], queue="periodic")
    orch.schedule("nightly-report", "tests:add", cron="30 2 * * *", tz="Europe/Paris", queue="periodic",
                  catch_up="all", max_catch_up=3, overlap="skip")
    try:
        wait_for(lambda: {s.id: s for s in orch.schedules()}["heartbeat"].fired >= 2, "two ticks to fire", 15,
                 alive=stack.procs.started)
        page = pages.new(open_dash)
        page.goto("/")
        page.get_by_test_id("nav-schedules").click()
        expect(page.get_by_role("heading", name="Schedules")).to_be_visible()
        row = page.locator('tr[data-schedule="heartbeat"]')
        expect(row).to_contain_text("every 1 s")
        expect(page.locator('tr[data-schedule="nightly-report"]')).to_contain_text("cron 30 2 * * * (Europe/Paris)")
        shot(page, "schedules")
        row.locator('[data-action="schedule-pause"]').click()
        expect(row.get_by_test_id("schedule-paused")).to_be_visible()
        assert {s.id: s for s in orch.schedules()}["heartbeat"].paused
        fired = {s.id: s for s in orch.schedules()}["heartbeat"].fired
        row.locator('[data-action="schedule-run-now"]').click()
        expect(page.get_by_test_id("flash")).to_contain_text("Enqueued task")
        row.locator('[data-action="schedule-resume"]').click()
        expect(row.get_by_test_id("schedule-paused")).to_have_count(0)
        info = {s.id: s for s in orch.schedules()}["heartbeat"]
        assert not info.paused and info.fired >= fired  # run-now is not a tick
    finally:
        orch.remove_schedule("heartbeat")
        orch.remove_schedule("nightly-report")


def test_pages_for_the_readme(pages: Pages, dash: Server, orch: Orchestrator, stack: Stack) -> None:
    """The three screenshots of docs/ (copied by hand from output/ to docs/dashboard-*.png)."""
    [task_id] = enqueue(orch, "failures", "tests:always_fail", max_retries=1)
    enqueue(orch, "counts", "tests:add", 1, 1, n=5)
    wait_states(orch, "failures", [task_id], "failed", stack)
    page = pages.new(dash)
    sign_in(page, TOKEN)
    expect(page.get_by_test_id("feed-status")).to_have_text("live")
    expect(page.get_by_test_id("feed").locator("li").first).to_be_visible()
    shot(page, "overview")
    page.goto("/queues/failures?state=failed")
    expect(page.get_by_test_id("tasks").locator("tbody tr")).to_have_count(2)
    shot(page, "queue")
    page.goto(f"/tasks/{task_id}")
    expect(page.get_by_test_id("attempt")).to_have_count(2)
    shot(page, "task", full_page=True)  # down to the attempts' timeline


def test_every_page_fits_a_phones_width(pages: Pages, open_dash: Server, orch: Orchestrator, stack: Stack) -> None:
    [task_id] = enqueue(orch, "failures", "tests:always_fail", max_retries=0)
    wait_states(orch, "failures", [task_id], "failed", stack)
    page = pages.new(open_dash, "phone")
    page.set_viewport_size({"width": 390, "height": 844})
    for path in ("/", "/queues/failures?state=failed", f"/tasks/{task_id}", "/workers", "/schedules"):
        page.goto(path)
        expect(page.locator("main h1")).to_be_visible()
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{path} is {overflow} px wider than a phone's screen"
