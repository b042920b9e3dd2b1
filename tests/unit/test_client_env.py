"""Orchestrator() reads its deployment from the environment, like the CLI does."""

from __future__ import annotations

import pytest

from orchestrator import Orchestrator


def test_defaults_without_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORCH_REDIS_URL", raising=False)
    monkeypatch.delenv("ORCH_PREFIX", raising=False)
    app = Orchestrator()
    assert (app.settings.redis_url, app.settings.prefix) == ("redis://localhost:6379/0", "orch")


def test_url_and_prefix_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_REDIS_URL", "redis://elsewhere:6380/2")
    monkeypatch.setenv("ORCH_PREFIX", "jobs")
    app = Orchestrator()
    assert (app.settings.redis_url, app.settings.prefix) == ("redis://elsewhere:6380/2", "jobs")
    assert app.keys("default").pending == "jobs:{default}:pending"


def test_an_explicit_url_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_REDIS_URL", "redis://elsewhere:6380/2")
    assert Orchestrator("redis://here:1/0").settings.redis_url == "redis://here:1/0"
