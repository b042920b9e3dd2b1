"""The ``orch`` command line against hostile input: secrets in URLs, deep JSON, a cluster node.

Each failure must be one ``Error:`` line (exit codes are pinned in test_cli.py), with no
password in it and the words a user needs (MOVED, CLUSTERDOWN).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from click.testing import Result

from tests.redis_server import RedisServer, free_port
from tests.test_cli import Invoke, invoke  # noqa: F401 - the fixture

SECRET = "Pa55-w0rd-secret"


def one_error_line(result: Result) -> str:
    """The failure's single ``Error:`` line (any non-zero exit, no traceback)."""
    assert result.exit_code not in (0, None), result.output
    assert isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"redis://:{SECRET}@[::1/0", None),  # unparsable: the URL error path (may not repeat the URL)
        (f"redis://127.0.0.1:{{port}}/0?password={SECRET}", "redis://127.0.0.1:{port}/0?password=***"),
        (f"redis://u:{SECRET}@127.0.0.1:{{port}}/0", "redis://u:***@127.0.0.1:{port}/0"),
    ],
)
def test_no_error_path_prints_the_password(invoke: Invoke, url: str, shown: str | None) -> None:  # noqa: F811
    port = free_port()
    line = one_error_line(invoke("--redis-url", url.format(port=port), "status"))
    assert SECRET not in line
    assert shown is None or shown.format(port=port) in line


def test_deep_json_arguments_are_one_line(invoke: Invoke) -> None:  # noqa: F811
    deep = "[" * 100_000 + "]" * 100_000
    line = one_error_line(invoke("enqueue", "pkg.mod:fn", "--args", deep))
    assert "--args" in line and "nested too deeply" in line
    line = one_error_line(invoke("enqueue", "pkg.mod:fn", "--kwargs", '{"a":' * 100_000 + "1" + "}" * 100_000))
    assert "--kwargs" in line and "nested too deeply" in line


def cluster_node(*extra: str) -> RedisServer:
    """A cluster-enabled redis-server; its bus on a free port (port + 10000 may not exist)."""
    return RedisServer(extra=("--cluster-enabled", "yes", "--cluster-port", str(free_port()), *extra)).start()


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[RedisServer, RedisServer]]:
    """Two cluster-enabled redis-servers sharing the 16384 slots (no replicas)."""
    nodes = [cluster_node() for _ in "ab"]
    try:
        a, b = (redis.Redis(port=n.port) for n in nodes)
        a.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 8191)
        b.execute_command("CLUSTER", "ADDSLOTSRANGE", 8192, 16383)
        bus = int(b.config_get("cluster-port")["cluster-port"])
        a.execute_command("CLUSTER", "MEET", "127.0.0.1", nodes[1].port, bus)
        deadline = time.monotonic() + 10
        while not all(b"cluster_state:ok" in n.execute_command("CLUSTER", "INFO") for n in (a, b)):
            assert time.monotonic() < deadline, "the two-node cluster did not form"
            time.sleep(0.05)
        yield nodes[0], nodes[1]
    finally:
        for node in nodes:
            node.stop()


def test_a_cluster_node_answer_keeps_its_word(invoke: Invoke, cluster: tuple[RedisServer, RedisServer]) -> None:  # noqa: F811
    a, b = cluster
    client = redis.Redis(port=a.port)
    slot = int(client.execute_command("CLUSTER", "KEYSLOT", "orch:queues"))
    elsewhere = b if slot < 8192 else a  # the node that does not serve orch:queues
    line = one_error_line(invoke("--redis-url", elsewhere.url, "status"))
    assert "MOVED" in line and "Redis Cluster" in line


def test_a_cluster_that_is_down_says_clusterdown(invoke: Invoke) -> None:  # noqa: F811
    node = cluster_node()  # no slot assigned: the cluster is down
    try:
        line = one_error_line(invoke("--redis-url", node.url, "status"))
        assert "CLUSTERDOWN" in line and "Redis Cluster" in line
    finally:
        node.stop()


def test_bad_known_queue_names_do_not_break_status_doctor_or_inspect(invoke: Invoke, r: redis.Redis) -> None:  # noqa: F811
    (task_id,) = invoke("enqueue", "pkg.mod:fn").stdout.split()
    r.sadd("orch:queues", "bad name!", b"\xff\xfe")
    status = invoke("status")
    assert status.exit_code == 0, status.output
    assert "default" in status.stdout and "bad name" not in status.stdout
    assert invoke("inspect", task_id).exit_code == 0
    doctor = invoke("doctor")
    assert doctor.exit_code == 1 and "Traceback" not in doctor.output  # a warning: something is wrong
    line = next(line for line in doctor.stdout.splitlines() if "known queues" in line)
    assert "'bad name!'" in line and "'\\xff\\xfe'" in line
