"""Clients built by ``connection``: quiet against servers without maintenance notifications."""

from __future__ import annotations

import asyncio
import logging

import pytest

from orchestrator import Orchestrator, Settings
from tests.redis_server import RedisServer


def test_no_maintenance_notification_noise_with_debug_logging(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app = Orchestrator(settings=Settings(redis_url=redis_server.url))

    async def ping_async() -> None:
        assert await app.aredis.ping()
        await app.aclose()

    try:
        assert app.redis.ping()
        asyncio.run(ping_async())
    finally:
        app.close()
    noise = [r.getMessage() for r in caplog.records if "maintenance notifications" in r.getMessage()]
    assert noise == []
