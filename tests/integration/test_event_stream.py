"""The one reader of a queue's event stream (orchestrator/event_stream.py), on a real Redis:
the latest entries oldest first, the entries after an id across streams, and an empty or
missing stream read as no entries."""

from __future__ import annotations

import redis

from orchestrator.event_stream import after, latest


def test_latest_gives_the_newest_entries_oldest_first(r: redis.Redis) -> None:
    ids = [r.xadd("s", {"n": str(n)}).decode() for n in range(5)]
    assert [eid for eid, _ in latest(r, "s", 3)] == ids[2:]
    assert [fields[b"n"] for _, fields in latest(r, "s", 10)] == [b"0", b"1", b"2", b"3", b"4"]
    assert latest(r, "s", 0) == [] and latest(r, "missing", 5) == []


def test_after_reads_each_stream_from_its_own_id(r: redis.Redis) -> None:
    first = r.xadd("a", {"n": "a0"}).decode()
    r.xadd("a", {"n": "a1"})
    r.xadd("b", {"n": "b0"})
    got = after(r, {"a": first, "b": "0-0"})
    assert [(stream, fields[b"n"]) for stream, _, fields in got] == [("a", b"a1"), ("b", b"b0")]
    assert [stream for stream, _, _ in after(r, {"a": first, "b": "0-0"}, count=1)] == ["a", "b"]
    newest = got[0][1]
    assert after(r, {"a": newest}) == []
    assert after(r, {"a": newest}, block_ms=10) == []  # waited, nothing came
