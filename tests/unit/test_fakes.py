"""``fakeredis://NAME`` URLs: checked like any Redis URL, one in-process database per NAME
shared by every client of it (sync and asyncio, several Orchestrators), a clear error when
the ``testing`` extra is missing, and the README listing every known limit of fakeredis."""

from __future__ import annotations

import asyncio
import importlib.util
import re
from pathlib import Path

import pytest

from orchestrator import ConfigurationError, Orchestrator, Settings, TaskNotFound, fakes
from tests.lua.limits import LIMITS

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.parametrize("url", ["fakeredis://", "fakeredis://a/0", "fakeredis://a?db=1", "fakeredis://a b"])
def test_a_bad_fake_url_is_refused_naming_the_setting(url: str) -> None:
    with pytest.raises(ConfigurationError, match="fakeredis://NAME") as info:
        Settings(redis_url=url)
    assert info.value.field == "redis_url"


def test_without_fakeredis_or_lupa_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "lupa" else real(name, *a))
    with pytest.raises(ConfigurationError, match=re.escape("pip install 'orchestrator-queue[testing]'")):
        Settings(redis_url="fakeredis://x")
    with pytest.raises(ConfigurationError, match="lupa"):
        fakes.sync_client("fakeredis://x")


def test_every_client_of_one_name_sees_one_database_and_other_names_another() -> None:
    urls = ["fakeredis://unit-a", "fakeredis://unit-a", "fakeredis://unit-b"]
    producer, operator, other = (Orchestrator(url) for url in urls)
    try:
        handle = producer.enqueue("tests.jobs:job", [1])
        assert operator.get_task(handle.id).args == [1]
        with pytest.raises(TaskNotFound):
            other.get_task(handle.id, "default")

        async def seen_by_asyncio() -> bytes | None:
            try:
                state: bytes | None = await operator.aredis.hget(operator.keys("default").task(handle.id), "state")
                return state
            finally:
                await operator.aclose()

        assert asyncio.run(seen_by_asyncio()) == b"PENDING"
    finally:
        for app in (producer, operator, other):
            app.redis.flushall()
            app.close()


def test_the_readme_lists_every_known_limit_of_fakeredis() -> None:
    section = re.split(r"\n#{1,3} ", README.read_text().split("### On fakeredis\n", 1)[1])[0]
    assert [limit for limit in LIMITS if limit not in section] == []
