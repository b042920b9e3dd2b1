"""The dashboard's browser tests: Debian's chromium, driven by Playwright, against real processes.

Owns the fixtures: one ``stack`` per module (two ``orch worker`` processes and an
``orch scheduler`` on the suite's private redis-server serving the queues of ``QUEUES``,
and ``orch serve`` under uvicorn with tokens, ``dash``: the full and the read token, and
without, ``open_dash``: loopback only; all started at once, then waited for), one headless
chromium per module (``browser``: the executable ``scripts/setup`` installs, never
Playwright's own download), and ``pages`` per test at 1280x800 that fail their test on any
console error or uncaught page error (``console`` lets a test name the errors it expects)
and are saved as screenshots in ``tests/browser/output/`` (ignored by git) when the test
ends. Does not assert anything about the dashboard: the tests do. Tests keep apart by
queue (one of ``QUEUES`` each), not by emptying Redis: the processes live for the module.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    ViewportSize,
    expect,
    sync_playwright,
)

from orchestrator import Orchestrator, Settings
from orchestrator.keys import QueueKeys
from orchestrator.redis_local import LocalRedis, free_port
from tests.integration.procs import Procs, wait_for
from tests.server.conftest import TOKENS, Server, answers

OUTPUT = Path(__file__).parent / "output"
CHROMIUM = os.environ.get("ORCH_TEST_CHROMIUM") or "/usr/bin/chromium"
# As root in a sandbox without a network: no sandbox, no GPU, nothing phoning home.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
EXPECT_TIMEOUT_MS = 15_000  # a page waits this long for a condition before the test fails
expect.set_options(timeout=EXPECT_TIMEOUT_MS)
QUEUES = ("counts", "failures", "retries", "pausing", "reading", "periodic")
_CONSOLE: pytest.StashKey[Console] = pytest.StashKey()


# ------------------------------------------------------------------ processes


@dataclass
class Stack:
    """The module's processes: workers, scheduler and both servers (``procs.started``)."""

    procs: Procs
    dash: Server
    open_dash: Server


def _serve(procs: Procs, name: str, env: dict[str, str]) -> Server:
    port = free_port()
    proc = procs.start(name, ["serve", "--port", str(port)], env=env)
    return Server(proc, f"http://127.0.0.1:{port}")


@pytest.fixture(scope="module")
def stack(redis_server: LocalRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Two workers (thread pool, 2 slots each) and a scheduler on every queue of ``QUEUES``,
    and ``orch serve`` with tokens and without, started together on an emptied database
    (the overview lists every known queue), then waited for."""
    redis.Redis(port=redis_server.port).flushdb()
    with Procs(redis_server.url, tmp_path_factory.mktemp("stack")) as procs:
        dash, open_dash = _serve(procs, "serve-tokens", TOKENS), _serve(procs, "serve-open", {})
        workers = [f"browser-w{i}" for i in range(2)]
        for name in workers:
            procs.worker(name, concurrency=2, queues=QUEUES, ready=False)
        procs.scheduler("browser-scheduler", queues=QUEUES)
        keys = [QueueKeys(q).workers for q in QUEUES]
        wait_for(lambda: all(procs.redis.zscore(k, w) is not None for k in keys for w in workers),
                 "the workers to register", 30, alive=procs.started)
        wait_for(lambda: all(answers(s.base_url + "/healthz") for s in (dash, open_dash)), "both servers to answer",
                 30, alive=procs.started)
        yield Stack(procs, dash, open_dash)


@pytest.fixture(scope="module")
def orch(redis_server: LocalRedis, stack: Stack) -> Iterator[Orchestrator]:
    """The operator API on the same Redis, for the tests' own enqueues and checks."""
    app = Orchestrator(settings=Settings(redis_url=redis_server.url))
    yield app
    app.close()


@pytest.fixture(scope="module")
def dash(stack: Stack) -> Server:
    """``orch serve`` with a full and a read token: a browser logs in with one of them."""
    return stack.dash


@pytest.fixture(scope="module")
def open_dash(stack: Stack) -> Server:
    """``orch serve`` without a token: open to loopback Hosts, a developer's own machine."""
    return stack.open_dash


# -------------------------------------------------------------------- browser


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} not found: scripts/setup installs Debian's chromium (or set ORCH_TEST_CHROMIUM)")
    found = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    yield found
    found.close()


@dataclass
class Console:
    """What a page said on its console (errors and warnings) and its uncaught errors."""

    messages: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def allow(self, pattern: str) -> None:
        """An error this test expects (a regular expression searched in the message)."""
        self.allowed.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        return [m for m in self.messages if not any(p.search(m) for p in self.allowed)]

    def watch(self, page: Page) -> None:
        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                where = message.location.get("url", "")
                self.messages.append(f"console.error at {where}: {message.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda error: self.messages.append(f"uncaught {error.name}: {error.message}"))


@pytest.fixture
def console(request: pytest.FixtureRequest) -> Console:
    found = Console()
    request.node.stash[_CONSOLE] = found
    return found


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """A test whose pages logged an unexpected error fails (not only errs in teardown)."""
    result = yield
    found = item.stash.get(_CONSOLE, None)
    if found is not None and found.unexpected():
        raise AssertionError("the page logged errors:\n" + "\n".join(found.unexpected()))
    return result


@dataclass
class Pages:
    """New browser contexts (each its own cookies: one login each) whose pages are watched."""

    browser: Browser
    console: Console
    contexts: list[BrowserContext] = field(default_factory=list)
    pages: list[tuple[str, Page]] = field(default_factory=list)

    def new(self, server: Server, label: str = "") -> Page:
        context = self.browser.new_context(base_url=server.base_url, viewport=VIEWPORT)
        context.set_default_timeout(EXPECT_TIMEOUT_MS)
        self.contexts.append(context)
        page = context.new_page()
        self.console.watch(page)
        self.pages.append((label, page))
        return page

    def close(self, name: str) -> None:
        OUTPUT.mkdir(exist_ok=True)
        for label, page in self.pages:
            if not page.is_closed():
                suffix = f"-{label}" if label else ""
                page.screenshot(path=OUTPUT / f"{name}{suffix}.png", full_page=True)
        for context in self.contexts:
            context.close()


@pytest.fixture
def pages(browser: Browser, console: Console, request: pytest.FixtureRequest) -> Iterator[Pages]:
    """Watched pages; each is saved as ``output/<test>[-label].png`` when the test ends."""
    found = Pages(browser, console)
    yield found
    found.close(re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name))


def shot(page: Page, name: str, *, full_page: bool = False) -> Path:
    """Save what ``page`` shows now as ``output/<name>.png`` (the README's images come from these)."""
    OUTPUT.mkdir(exist_ok=True)
    path = OUTPUT / f"{name}.png"
    page.screenshot(path=path, full_page=full_page)
    return path


def log_in(page: Page, token: str) -> None:
    """Log in as the dashboard's form does: the session cookie lands in the page's context."""
    reply = page.request.post("/api/v1/session", data={"token": token})
    assert reply.ok, reply.text()

