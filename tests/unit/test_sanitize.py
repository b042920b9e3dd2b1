"""What leaves the process: redacted URLs, escaped values from Redis, Redis errors with their word."""

from __future__ import annotations

import logging

import pytest
from redis.exceptions import ClusterDownError, MovedError, ResponseError

from orchestrator.sanitize import escape, get_logger, redact, redact_url, redis_error_text


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:PW@[::1/0", "redis://:***@[::1/0"),  # too broken for urllib: still redacted
        ("redis://u:PW@host:6379/0", "redis://u:***@host:6379/0"),
        ("redis://u:p%40w@host/0", "redis://u:***@host/0"),
        ("rediss://host/0?password=PW&db=1", "rediss://host/0?password=***&db=1"),
        ("redis://host/0?ssl=1&Password=PW", "redis://host/0?ssl=1&Password=***"),
        ("unix:///tmp/r.sock?password=PW", "unix:///tmp/r.sock?password=***"),
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("redis://user@host/0", "redis://user@host/0"),
        ("redis+cluster://u:PW@h1:7000,h2:7001", "redis+cluster://u:***@h1:7000,h2:7001"),
        ("redis+sentinel://:PW@s1,s2/m/0?sentinel_password=SPW", "redis+sentinel://:***@s1,s2/m/0?sentinel_password=***"),
    ],
)
def test_redact_url_masks_every_spelling_of_the_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_masks_the_password_wherever_a_message_quotes_it() -> None:
    url = "redis://u:s3cr%21t@host/0?password=other"
    text = f"cannot use {url}: auth s3cr%21t failed; tried other"
    assert redact(text, url) == "cannot use redis://u:***@host/0?password=***: auth *** failed; tried ***"


def test_escape_keeps_one_printable_line() -> None:
    assert escape("tests:add") == "tests:add"
    assert escape("café ünïcode") == "café ünïcode"
    assert escape("a\nb\r\x1b[31m\u2028\u202e") == "a\\nb\\r\\x1b[31m\\u2028\\u202e"
    assert escape(b"ok\xff\n") == "ok\\xff\\n"
    assert "\n" not in escape(ValueError("two\nlines"))


def test_library_loggers_escape_what_they_interpolate(caplog: pytest.LogCaptureFixture) -> None:
    log = get_logger("orchestrator.test_sanitize")
    assert get_logger("orchestrator.test_sanitize").filters.count(log.filters[0]) == 1  # added once
    forged = "x\n2026-12-03 10:00:00,000 [Monitor] Worker w1 unresponsive"
    with caplog.at_level(logging.INFO, logger="orchestrator.test_sanitize"):
        log.info("[Worker w] Task %s (%s) took %d ms", b"id\xff", forged, 3)
        log.info("%(name)s", {"name": forged})
    lines = caplog.text.splitlines()
    assert len(lines) == 2
    assert "Task id\\xff (x\\n2026-12-03 10:00:00,000 [Monitor] Worker w1 unresponsive) took 3 ms" in lines[0]
    assert not any(line.lstrip().startswith("2026-12-03") for line in lines)


def test_redis_errors_keep_the_word_redis_py_strips() -> None:
    moved = MovedError("1234 127.0.0.1:7001")
    assert str(moved) == "1234 127.0.0.1:7001"  # what redis-py makes of "MOVED 1234 127.0.0.1:7001"
    assert redis_error_text(moved) == (
        "MOVED 1234 127.0.0.1:7001 (a Redis Cluster node answered: give a redis+cluster:// URL)"
    )
    assert redis_error_text(ClusterDownError("The cluster is down")).startswith("CLUSTERDOWN The cluster is down")
    assert redis_error_text(ResponseError("WRONGTYPE Operation against a key")) == "WRONGTYPE Operation against a key"


def test_the_producer_api_keeps_the_word_too() -> None:
    from orchestrator.redis_calls import translate

    assert "MOVED 1234 127.0.0.1:7001" in str(translate(MovedError("1234 127.0.0.1:7001")))
    assert "CLUSTERDOWN" in str(translate(ClusterDownError("The cluster is down")))


def test_a_missing_sentinel_master_is_one_short_line() -> None:
    from redis.sentinel import MasterNotFoundError

    exc = MasterNotFoundError("No master found for 'mymaster' : <redis.client.Redis(<ConnectionPool(...)>)> - x")
    assert redis_error_text(exc) == (
        "No master found for 'mymaster' (no sentinel listed answered, or none knows that master)"
    )
