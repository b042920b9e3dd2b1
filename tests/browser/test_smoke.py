"""Smoke: the fixtures start chromium and the processes, and a page of ``orch serve`` loads."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.server.conftest import TOKEN, Server

from .conftest import Console, Pages, log_in


def test_openapi_document_in_the_browser(pages: Pages, console: Console, dash: Server, open_dash: Server) -> None:
    console.allow(r"/favicon\.ico")  # a JSON document has no icon; the dashboard's pages do
    page = pages.new(open_dash, "open")
    page.goto("/api/v1/openapi.json")
    expect(page.locator("body")).to_contain_text('"openapi"')
    page.goto("/healthz")
    page = pages.new(dash, "token")
    log_in(page, TOKEN)
    page.goto("/api/v1/openapi.json")
    expect(page.locator("body")).to_contain_text("/api/v1/queues/{queue}/pause")
    page.goto("/healthz")  # a short page for the screenshot (the document's full page takes seconds)
    expect(page.locator("body")).to_contain_text('"ok"')
