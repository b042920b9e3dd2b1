"""Sharded queues' names and layout record, without Redis: physical names, the record's
defensive reading, the producer's choice of a shard (#17)."""

from __future__ import annotations

import zlib

import pytest

from orchestrator.errors import InvalidQueueName, ValidationError
from orchestrator.keys import (
    QueueKeys,
    logical_queue,
    shard_queue,
    shards_key,
    validate_queue_name,
    validate_stored_name,
)
from orchestrator.shards import ShardRouter, check_shards, parse_layouts


def test_shard_names_cannot_be_queue_names_but_are_valid_stored_names() -> None:
    assert shard_queue("hot", 0) == "hot#0" and shard_queue("hot", 1, 7) == "hot#1-7"
    for name in ("hot#0", "hot#1-7", "a.b-c_d#63-9999"):
        assert validate_stored_name(name) == name
        with pytest.raises(InvalidQueueName):
            validate_queue_name(name)  # a user's queue never collides with a shard
        assert logical_queue(name) == name.split("#")[0]
    for bad in ("hot#", "#0", "hot#x", "hot#0#1", "hot#0-", "bad name#0"):
        with pytest.raises(InvalidQueueName):
            validate_stored_name(bad)
    assert QueueKeys("hot#1-7").pending == "orch:{hot#1-7}:pending"
    assert shards_key() == "orch:shards" and logical_queue("plain") == "plain"


def test_a_spoiled_layout_entry_reads_as_a_plain_queue() -> None:
    good = '{"shards":2,"queues":["hot#0","hot#1-3"]}'
    raw = {
        b"hot": good.encode(),
        b"bad name": good.encode(),
        b"short": b'{"shards":3,"queues":["short#0"]}',
        b"twice": b'{"shards":2,"queues":["twice#0","twice#0"]}',
        b"notjson": b"{",
        b"badshard": b'{"shards":1,"queues":["x y"]}',
        b"\xff": good.encode(),
    }
    assert parse_layouts(raw) == {"hot": ("hot#0", "hot#1-3")}


def test_the_router_hashes_key_then_unique_key_else_takes_turns() -> None:
    router = ShardRouter()
    router.update({"hot": ("hot#0", "hot#1", "hot#2")}, 0.0)
    assert router.route("plain", "k", "u") == "plain"
    assert router.route("hot", "k1", "") == ("hot#0", "hot#1", "hot#2")[zlib.crc32(b"k1") % 3]
    assert router.route("hot", "", "u1") == router.route("hot", "u1", "u1")
    with pytest.raises(ValidationError) as caught:
        router.route("hot", "a", "b")
    assert caught.value.field == "unique_key"
    assert [router.route("hot", "", "") for _ in range(6)] == ["hot#0", "hot#1", "hot#2"] * 2
    assert router.stale(0.5) is False and router.stale(1.0) is True


@pytest.mark.parametrize("bad", [0, 65, True, 2.0, "3"])
def test_shards_outside_1_to_64_are_refused(bad: object) -> None:
    with pytest.raises(ValidationError):
        check_shards(bad)
