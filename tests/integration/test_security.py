"""Security: the README's ACL recipe and TLS set-up, proven on real servers, and what a
stranger who can write into Redis can (not) make a worker do.

- ACL: a redis-server loaded with the recipe's users (default user off; ``producer`` and
  ``worker`` limited to ``orch:*`` keys and the commands their role runs). The producer
  API and real ``orch worker`` / ``orch scheduler`` processes work through every
  transition as those users; everything else is refused, Lua included (Redis 7 checks
  every command a script runs, and every key it touches, against the caller's ACL).
- TLS: a throwaway CA and server certificate made with the openssl CLI, a redis-server
  with only a TLS port, and the ``rediss://`` URL of the README for the producer API and
  a real worker; an untrusted certificate, one for another host, or plain text is refused.
- JSON only: a pickle written by hand into a task record is never unpickled.

Queue-name validation and payload limits (client and script) are in
``tests/lua/test_enqueue.py`` and ``tests/lua/test_scripts.py``.
"""

from __future__ import annotations

import base64
import dataclasses
import pickle
import re
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import quote

import orjson
import pytest
import redis
from click.testing import CliRunner
from redis.backoff import NoBackoff
from redis.retry import Retry

import orchestrator
from orchestrator import InvalidPayload, NotSerializable, Orchestrator, TaskFailed, TaskState
from orchestrator.cli.commands import orch
from orchestrator.errors import RedisCommandError, ValidationError
from orchestrator.redis_local import LocalRedis
from orchestrator.script_calls import run
from orchestrator.transitions import TaskSpec
from tests.integration.procs import Proc, Procs, wait_for

S = TaskState
LUA = Path(orchestrator.__file__).parent / "lua"
DEMO_APP = "orchestrator.demo.tasks"  # demo:work sleeps, demo:doomed always fails; neither touches Redis

# ------------------------------------------------------------------ the recipe
# These tuples render the README's ACL lines (see acl_line); test_acl_recipe_* keeps them
# equal to what the scripts and the Python code run.

PRODUCER_DIRECT = ("evalsha", "script|load", "sadd", "hget", "hgetall", "hmget", "ssubscribe")  # enqueue, status,
# progress, result (woken on the task's channel orch:{Q}:finished:<id>)
WORKER_DIRECT = ("evalsha", "script|load", "blpop", "hmget", "smembers", "subscribe")  # wake-up, commit check,
# scheduler, cancel requests (channels orch:{Q}:cancels)
PRODUCER_SCRIPTS = ("enqueue", "watch")
WORKER_SCRIPTS = ("claim", "heartbeat", "complete", "fail", "release", "promote", "reap", "rollup", "progress")
PRODUCER_COMMANDS = (
    *PRODUCER_DIRECT, "type", "time", "exists", "get", "set", "hset", "hincrby", "zadd", "xadd", "llen", "rpush",
    "sismember", "scard", "hdel", "pexpireat",  # metrics: a task name's label, a series minute's expiry
)
WORKER_COMMANDS = (
    *WORKER_DIRECT, "type", "time", "get", "del", "hget", "hset", "hdel", "hincrby", "pexpire", "pexpireat",
    "zadd", "zcard", "zrange", "zrem", "xadd", "llen", "rpush", "set",  # set: the scheduler's last roll-up
    "spublish",  # a task's end, on its channel orch:{Q}:finished:<id>
)
CANCEL_EXTRA = ("zrem", "zrange", "del", "publish", "spublish")  # for producers that may cancel
READER_COMMANDS = ("@read", "time")  # orch status, events, inspect: read-only commands, on orch:* keys only
# Keys a producer writes (enqueue); it reads every orch:* key. Not the lease-token counter
# (tokens), nor running, workers, failed or done: a producer cannot reset or forge those.
PRODUCER_WRITES = ("queues", "{*}:task:*", "{*}:key:*", "{*}:unique:*", "{*}:pending", "{*}:scheduled", "{*}:stats",
                   "{*}:events", "{*}:wake", "{*}:metrics", "{*}:names", "{*}:series:*")
PRODUCER_CHANNELS = ("{*}:finished:*",)  # result(): a task's end (without it, result() polls)
CANCEL_WRITES = ("{*}:cancelled", "{*}:retrying", "{*}:failed")  # cancel retires a record, or moves a bad one aside
PASSWORDS = {"producer": "producer-secret", "worker": "worker-secret", "reader": "reader-secret",
             "admin": "admin-secret"}


def acl_line(
    user: str, commands: Sequence[str], writes: Sequence[str] | None = None, prefix: str = "orch",
    channels: Sequence[str] = (),
) -> str:
    """One user of the recipe: ``writes`` None reads and writes every key under the prefix
    (and may use all its channels: a worker hears cancel requests there); else it reads
    them all (%R~), writes only those patterns (~: a key a command both reads and writes,
    as a script's KEYS are, needs one pattern granting both) and uses only ``channels``."""
    allowed = " ".join(f"+{c}" for c in commands)
    keys = f"~{prefix}:*" if writes is None else " ".join([f"%R~{prefix}:*", *(f"~{prefix}:{w}" for w in writes)])
    rights = "".join(f" &{prefix}:{c}" for c in (("*",) if writes is None else channels))
    return f"user {user} on >{PASSWORDS[user]} resetchannels{rights} resetkeys {keys} -@all {allowed}"


ACL_FILE = "\n".join(
    [
        "user default off",
        acl_line("producer", PRODUCER_COMMANDS, PRODUCER_WRITES, channels=PRODUCER_CHANNELS),
        acl_line("worker", WORKER_COMMANDS),
        acl_line("reader", READER_COMMANDS, ()),
        f"user admin on >{PASSWORDS['admin']} ~* &* +@all",  # the test's own eyes; not part of the recipe
        "",
    ]
)

_CALL = re.compile(r"""(?:redis\.p?call|call_typed)\(\s*['"]([A-Za-z]+)['"]""")
_ANY_CALL = re.compile(r"(?:redis\.p?call|call_typed)\((?!\.\.\.)")  # not call_typed's own forwarding


def script_commands(*names: str) -> set[str]:
    """The commands the named scripts can run: their own ``redis.call``s and those of
    every ``_lib.lua`` helper they call, directly or through another helper."""
    lib = (LUA / "_lib.lua").read_text()
    prelude, *chunks = re.split(r"^(?=local function )", lib, flags=re.MULTILINE)
    helpers = {chunk.removeprefix("local function ").split("(")[0].strip(): chunk for chunk in chunks}
    todo = [prelude, *((LUA / f"{name}.lua").read_text() for name in names)]
    seen: set[str] = set()
    found: set[str] = set()
    while todo:
        text = todo.pop()
        assert len(_ANY_CALL.findall(text)) == len(_CALL.findall(text)), (
            "a script calls a command that is not a string literal: list it in the ACL recipe by hand"
        )
        found |= {c.lower() for c in _CALL.findall(text)}
        for name, body in helpers.items():
            if name not in seen and re.search(rf"\b{name}\(", text):
                seen.add(name)
                todo.append(body)
    return found


# --------------------------------------------------------------------- servers


class Server(LocalRedis):
    """A private redis-server with the test's own ``args`` (after ours, so they win),
    ready once ``ready_url`` answers PING: there is no plain port, or no default user."""

    def __init__(self) -> None:
        super().__init__(appendonly=False)
        self.args: list[str] = []

    def _args(self, exe: str) -> list[str]:
        return [*super()._args(exe), *self.args]


class AclServer(Server):
    def user_url(self, user: str) -> str:
        return f"redis://{user}:{PASSWORDS[user]}@127.0.0.1:{self.port}/0"

    def app(self, user: str) -> Orchestrator:
        return Orchestrator(self.user_url(user))


class AdminProcs(Procs):
    """Processes run as one ACL user; the test reads Redis back as admin."""

    def __init__(self, url: str, logdir: Path, admin_url: str) -> None:
        super().__init__(url, logdir)
        self.redis.close()
        self.redis = redis.Redis.from_url(admin_url)


@pytest.fixture(scope="module")
def acl() -> Iterator[AclServer]:
    server = AclServer()
    aclfile = server.dir / "users.acl"
    aclfile.write_text(ACL_FILE)
    server.args = ["--port", str(server.port), "--aclfile", str(aclfile)]
    server.ready_url = server.user_url("admin")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def admin(acl: AclServer) -> Iterator[redis.Redis]:
    """The admin's client, on an emptied database."""
    client = redis.Redis.from_url(acl.user_url("admin"))
    client.flushall()
    client.script_flush()  # so every test also proves the NOSCRIPT -> SCRIPT LOAD path
    yield client
    client.close()


@pytest.fixture
def producer(acl: AclServer, admin: redis.Redis) -> Iterator[Orchestrator]:
    app = acl.app("producer")
    yield app
    app.close()


@pytest.fixture
def worker_app(acl: AclServer, admin: redis.Redis) -> Iterator[Orchestrator]:
    app = acl.app("worker")
    yield app
    app.close()


def snapshot(r: redis.Redis) -> dict[object, object]:
    return {key: (r.type(key), r.dump(key)) for key in r.scan_iter(count=1000)}


def spec(task_id: str) -> TaskSpec:
    return TaskSpec(
        id=task_id, name="demo:work", priority=5, args=b"[1]", kwargs=b"{}", max_retries=0,
        timeout_ms=0, backoff_ms=0, backoff_max_ms=0, jitter=False, delay_ms=0,
    )


# ------------------------------------------------------------------- ACL: recipe


def test_acl_recipe_grants_what_the_scripts_and_the_code_run_and_nothing_more() -> None:
    """A command missing from a user's list fails a script midway, and Redis does not roll
    a script back: the lists must follow the scripts exactly."""
    assert set(PRODUCER_COMMANDS) == set(PRODUCER_DIRECT) | script_commands(*PRODUCER_SCRIPTS)
    assert set(WORKER_COMMANDS) == set(WORKER_DIRECT) | script_commands(*WORKER_SCRIPTS)
    assert set(CANCEL_EXTRA) == script_commands("cancel") - set(PRODUCER_COMMANDS)
    assert len(PRODUCER_COMMANDS) == len(set(PRODUCER_COMMANDS))
    assert len(WORKER_COMMANDS) == len(set(WORKER_COMMANDS))


def refused(url: str, error: type[Exception], match: str | None = None) -> None:
    """A client on ``url`` fails with ``error`` at once (redis-py would retry a connection error)."""
    client = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0))
    try:
        with pytest.raises(error, match=match):
            client.ping()
    finally:
        client.close()


def test_default_user_is_off(acl: AclServer, admin: redis.Redis) -> None:
    refused(f"redis://127.0.0.1:{acl.port}/0", redis.AuthenticationError)
    refused(f"redis://producer:wrong@127.0.0.1:{acl.port}/0", redis.AuthenticationError)


# ---------------------------------------------------------------- ACL: producer


def test_producer_enqueues_and_reads_results(producer: Orchestrator, worker_app: Orchestrator) -> None:
    handle = producer.enqueue("demo:work", [5], key="order-1")
    again = producer.enqueue("demo:work", [5], key="order-1")
    assert (again.id, again.created) == (handle.id, False)
    later = producer.enqueue("demo:work", [1], delay=60)
    bulk = producer.enqueue_many([producer.request("demo:work", [i], queue="bulk") for i in range(3)])
    assert (handle.status(), later.status(), bulk[2].status()) == (S.PENDING, S.SCHEDULED, S.PENDING)

    # The worker user does what a worker does; the producer reads the outcomes, woken on
    # the task's channel (the producer may subscribe to it, the worker's script publish there).
    queue = worker_app._scripts("default")
    [lease] = run(worker_app.redis, queue.claim("w1", 1, 60_000))
    run(worker_app.redis, queue.progress(lease.task_id, lease.token, "0.5", b'"half"', max_bytes=100))
    assert handle.progress().data == "half"
    listener = handle._listen()
    assert listener is not None, "the producer cannot subscribe to the task's channel"
    try:
        assert handle._watch() is S.RUNNING, "the producer cannot mark the task as waited for"
        run(worker_app.redis, queue.complete(lease.task_id, lease.token, b'"done"', 60_000))
        message = listener.get_sharded_message(timeout=5)
        assert message is not None and message["data"] == b"SUCCESS", "the worker's complete published nothing"
    finally:
        listener.close()
    assert handle.result(timeout=5) == "done"
    assert handle.info().state is S.SUCCESS
    bulk_queue = worker_app._scripts("bulk")
    [lease] = run(worker_app.redis, bulk_queue.claim("w1", 1, 60_000))
    error = orjson.dumps({"type": "ValueError", "message": "bad", "traceback": ""})
    run(worker_app.redis, bulk_queue.fail(lease.task_id, lease.token, error, mode="fatal"))
    with pytest.raises(TaskFailed, match="bad"):
        bulk[0].result(timeout=5)


@pytest.mark.parametrize("user", ["producer", "worker"])
@pytest.mark.parametrize(
    "command",
    [
        ("FLUSHALL",),
        ("FLUSHDB",),
        ("CONFIG", "GET", "requirepass"),
        ("CONFIG", "SET", "appendonly", "no"),
        ("ACL", "SETUSER", "producer", "+@all"),
        ("KEYS", "*"),
        ("SCAN", "0"),
        ("CLIENT", "LIST"),
        ("SAVE",),
        ("SCRIPT", "FLUSH"),
        ("EVAL", "return 1", "0"),
        ("PUBLISH", "orch:channel", "x"),
        ("GET", "secret"),
        ("SET", "secret", "overwritten"),
        ("DEL", "secret"),
        ("HGETALL", "other:{default}:task:1"),
    ],
    ids=lambda c: " ".join(c) if isinstance(c, tuple) else c,
)
def test_users_cannot_run_anything_else(
    acl: AclServer, admin: redis.Redis, user: str, command: tuple[str, ...]
) -> None:
    admin.set("secret", "s3cret")
    admin.hset("other:{default}:task:1", "args", "[]")
    before = snapshot(admin)
    client = redis.Redis.from_url(acl.user_url(user))
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.execute_command(*command)
    finally:
        client.close()
    assert snapshot(admin) == before


@pytest.mark.parametrize("user", ["producer", "worker"])
def test_lua_runs_with_the_callers_permissions(acl: AclServer, admin: redis.Redis, user: str) -> None:
    """SCRIPT LOAD + EVALSHA is no way out: Redis 7 checks each command a script runs and
    each key it touches (declared in KEYS or built inside) against the caller's ACL."""
    admin.set("secret", "s3cret")
    app = acl.app(user)
    try:
        before = snapshot(admin)
        client = app.redis
        flush = client.script_load("return redis.call('FLUSHALL')")
        with pytest.raises(redis.ResponseError, match="can't run this command"):
            client.evalsha(flush, 0)
        declared = client.script_load("return redis.call('GET', KEYS[1])")
        with pytest.raises(redis.exceptions.NoPermissionError):  # EVALSHA checks the declared KEYS
            client.evalsha(declared, 1, "secret")
        undeclared = client.script_load("return redis.call('GET', ARGV[1])")
        with pytest.raises(redis.ResponseError, match="can't access"):  # and GET checks its key
            client.evalsha(undeclared, 0, "secret")
        built = client.script_load("return redis.call('HSET', 'other:' .. KEYS[1], 'x', '1')")
        with pytest.raises(redis.ResponseError, match="can't access"):
            client.evalsha(built, 1, "orch:{default}:task:1")
        # The orchestrator's own script, given a key base outside orch:*, writes nothing
        # (it refuses the call itself: its KEYS are not under that base).
        call = app._scripts("default").enqueue([spec("t1")], max_payload=1000)
        escaped = dataclasses.replace(call, args=("other:{default}:", *call.args[1:]))
        with pytest.raises(ValidationError, match="not under the base"):
            run(client, escaped)
        escaped = dataclasses.replace(escaped, keys=[k.replace("orch:", "other:", 1) for k in call.keys])
        with pytest.raises(redis.exceptions.NoPermissionError):  # and with KEYS to match, the ACL
            run(client, escaped)
        assert snapshot(admin) == before
    finally:
        app.close()


def test_each_user_runs_only_its_own_transitions(producer: Orchestrator, worker_app: Orchestrator,
                                                 admin: redis.Redis) -> None:
    handle = producer.enqueue("demo:work", [1])
    before = snapshot(admin)
    refused = "can't run this command|no permissions to access"  # a command, or a key (running, tokens)
    with pytest.raises(redis.ResponseError, match=refused):
        run(producer.redis, producer._scripts("default").claim("intruder", 1, 60_000))
    with pytest.raises(redis.ResponseError, match="can't run this command"):
        run(worker_app.redis, worker_app._scripts("default").enqueue([spec("t2")], max_payload=1000))
    with pytest.raises(RedisCommandError, match=refused):
        handle.cancel()  # the minimal producer cannot cancel (the producer API's error for a refusal)
    assert snapshot(admin) == before

    # The README's addition for producers that cancel.
    extra = [*(f"+{c}" for c in CANCEL_EXTRA), *(f"~orch:{w}" for w in CANCEL_WRITES), "&orch:*"]
    admin.execute_command("ACL", "SETUSER", "producer", *extra)
    try:
        assert handle.cancel() is S.CANCELLED
        assert handle.status() is S.CANCELLED
    finally:
        admin.execute_command("ACL", "LOAD")  # back to the file (this drops every connection)
        admin.connection_pool.disconnect()


def test_the_readme_gives_the_recipe_as_tested() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    users = (("producer", PRODUCER_COMMANDS, PRODUCER_WRITES, PRODUCER_CHANNELS),
             ("worker", WORKER_COMMANDS, None, ()), ("reader", READER_COMMANDS, (), ()))
    for user, commands, writes, channels in users:
        line = acl_line(user, commands, writes, channels=channels).replace(PASSWORDS[user], f"{user.upper()}-PASSWORD")
        assert line in readme, line
    assert " ".join(f"~orch:{w}" for w in CANCEL_WRITES) in readme
    assert " ".join(f"+{c}" for c in CANCEL_EXTRA) in readme


def test_a_producer_without_the_channel_still_gets_results(producer: Orchestrator, worker_app: Orchestrator,
                                                           admin: redis.Redis) -> None:
    """An ACL written before the channel (no &orch:{*}:finished:*, no +ssubscribe): result()
    polls instead of failing."""
    admin.execute_command("ACL", "SETUSER", "producer", "resetchannels", "-ssubscribe")
    try:
        handle = producer.enqueue("demo:work", [1])
        assert handle._listen() is None
        queue = worker_app._scripts("default")
        [lease] = run(worker_app.redis, queue.claim("w1", 1, 60_000))
        run(worker_app.redis, queue.complete(lease.task_id, lease.token, b'"polled"', 60_000))
        assert handle.result(timeout=5) == "polled"
    finally:
        admin.execute_command("ACL", "LOAD")  # back to the file (this drops every connection)
        admin.connection_pool.disconnect()


def test_a_producer_cannot_reset_the_lease_tokens(producer: Orchestrator, worker_app: Orchestrator,
                                                 admin: redis.Redis) -> None:
    """Tokens only grow: the counter has its own key, which the producer can read, not write.
    (The stats hash it does write no longer holds it.)"""
    k = producer.keys("default")
    producer.enqueue_many([producer.request("demo:work", [i]) for i in range(2)])
    queue = worker_app._scripts("default")
    [first] = run(worker_app.redis, queue.claim("w1", 1, 60_000))
    before = snapshot(admin)
    for command in (("SET", k.tokens, "0"), ("HSET", k.tokens, "x", "0"), ("ZADD", k.running, "0", "forged"),
                    ("ZADD", k.failed, "0", "forged"), ("HSET", k.worker("w1"), "last_seen", "0")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            producer.redis.execute_command(*command)
    sneaky = producer.redis.script_load("return redis.call('SET', KEYS[1], '0')")
    with pytest.raises(redis.exceptions.NoPermissionError):
        producer.redis.evalsha(sneaky, 1, k.tokens)
    assert snapshot(admin) == before
    assert producer.redis.get(k.tokens) == first.token.encode()  # readable: status and doctor show it
    producer.redis.hset(k.stats, "tokens", "0")  # writable, and meaningless now
    [second] = run(worker_app.redis, queue.claim("w1", 1, 60_000))
    assert int(second.token) > int(first.token)


def test_a_read_only_user_runs_status_and_events(acl: AclServer, admin: redis.Redis,
                                                producer: Orchestrator) -> None:
    handle = producer.enqueue("demo:work", [1])
    env = {"ORCH_REDIS_URL": acl.user_url("reader")}
    before = snapshot(admin)
    for args in (["status"], ["events", "-n", "5"], ["status", "--json"]):
        result = CliRunner().invoke(orch, args, env=env)
        assert result.exit_code == 0, (args, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit)
    assert handle.id in CliRunner().invoke(orch, ["events", "-n", "5"], env=env).output
    reader = redis.Redis.from_url(acl.user_url("reader"))
    try:
        for command in (("HSET", producer.keys("default").task(handle.id), "state", "FAILED"),
                        ("EVALSHA", "0" * 40, "0"), ("SET", "orch:{default}:tokens", "0")):
            with pytest.raises(redis.exceptions.NoPermissionError):
                reader.execute_command(*command)
    finally:
        reader.close()
    assert snapshot(admin) == before


# ------------------------------------------------------------- ACL: processes


STARTUP_WARNING = "Cannot check the Redis server"


def assert_no_permission_trouble(proc: Proc) -> None:
    """Scripts refused by the ACL surface as errors a process rides out with a backoff:
    the log is where they would show."""
    lines = [line for line in proc.log().splitlines() if STARTUP_WARNING not in line]
    trouble = re.compile(r"permission|can't|unavailable|Heartbeat failed|Giving up|Traceback")
    bad = [line for line in lines if trouble.search(line)]
    assert not bad, f"{proc.name} hit errors:\n" + "\n".join(bad)


@pytest.mark.slow
def test_worker_and_scheduler_run_every_transition_as_the_worker_user(
    acl: AclServer, admin: redis.Redis, producer: Orchestrator, tmp_path: Path
) -> None:
    with AdminProcs(acl.user_url("worker"), tmp_path, acl.user_url("admin")) as procs:
        # No -q: the scheduler reads the set of queues (SMEMBERS).
        scheduler = procs.scheduler(queues=())
        w1 = procs.worker("w1", concurrency=4, idle_wait=30, apps=[DEMO_APP])
        # Without INFO and CONFIG GET the start-up check cannot run: a warning, not a crash.
        assert STARTUP_WARNING in w1.log()
        wait_for(lambda: STARTUP_WARNING in scheduler.log(), "the scheduler's start-up warning", alive=[scheduler])
        # Idle, the worker blocks on its wake-up key (BLPOP), it does not poll.
        wait_for(lambda: procs.blocked_clients() >= 1, "w1 to block in BLPOP", alive=[w1])

        done = producer.enqueue("demo:work", [10])  # claim, heartbeat, complete
        delayed = producer.enqueue("demo:work", [11], delay=0.2)  # promote
        doomed = producer.enqueue("demo:doomed", [0], max_retries=1)  # fail: retry, promote, fail
        long = producer.enqueue("demo:work", [60_000], max_retries=2)  # reap, then release
        assert done.result(timeout=20) == 10
        assert delayed.result(timeout=20) == 11
        with pytest.raises(TaskFailed, match="simulated permanent error"):
            doomed.result(timeout=20)
        assert doomed.info().attempts == 2

        wait_for(lambda: procs.state(long.id) == "RUNNING", "the long task to start", alive=[w1])
        w1.kill9()  # its lease expires: the scheduler reaps and retries the task
        wait_for(lambda: procs.state(long.id) == "PENDING", "the long task to be reaped and promoted", 20,
                 alive=[scheduler])
        w2 = procs.worker("w2", grace=0, apps=[DEMO_APP])
        wait_for(lambda: procs.record(long.id).get("worker") == "w2", "w2 to claim the long task", 20, alive=[w2])
        w2.terminate()  # grace 0: released back to pending at once
        assert w2.wait_exit(10) == 0
        assert procs.state(long.id) == "PENDING"
        assert not procs.registered("w2")  # deregistered on the way out

        kinds = {e["event"] for e in procs.events()}
        assert kinds >= {"enqueued", "claimed", "succeeded", "promoted", "retrying", "failed", "reaped",
                         "released"}, kinds
        assert scheduler.returncode is None
        for proc in (scheduler, w1, w2):
            assert_no_permission_trouble(proc)


# ------------------------------------------------------------------------- TLS


def openssl(where: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=where, check=True, capture_output=True, timeout=30)


def make_certificates(where: Path) -> None:
    """ca.pem signs server.pem (for 127.0.0.1 and localhost) and elsewhere.pem (for another
    host); other-ca.pem signs nothing."""
    new_key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    for ca in ("ca", "other-ca"):
        openssl(where, "req", "-x509", *new_key, "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "2",
                "-subj", f"/CN=orchestrator test {ca}")
    for name, hosts in (("server", "IP:127.0.0.1,DNS:localhost"), ("elsewhere", "DNS:redis.example.org")):
        openssl(where, "req", *new_key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        (where / f"{name}.ext").write_text(
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
            f"subjectAltName={hosts}\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
        )
        openssl(where, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext")


def tls_args(port: int, certs: Path, name: str = "server") -> list[str]:
    return [
        "--port", "0", "--tls-port", str(port),
        "--tls-cert-file", str(certs / f"{name}.pem"), "--tls-key-file", str(certs / f"{name}.key"),
        "--tls-ca-cert-file", str(certs / "ca.pem"), "--tls-auth-clients", "no",
    ]


class TlsServer(Server):
    certs: Path

    def tls_url(self, ca: str = "ca.pem") -> str:
        ca_certs = quote(str(self.certs / ca))
        return f"rediss://127.0.0.1:{self.port}/0?ssl_cert_reqs=required&ssl_check_hostname=true&ssl_ca_certs={ca_certs}"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a throwaway certificate")
    certs = tmp_path_factory.mktemp("tls")
    make_certificates(certs)
    server = TlsServer()
    server.certs = certs
    server.args = tls_args(server.port, certs)
    server.ready_url = server.tls_url()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def tls_app(tls: TlsServer) -> Iterator[Orchestrator]:
    app = Orchestrator(tls.tls_url())
    app.redis.flushall()
    yield app
    app.close()


def test_tls_producer_api_and_a_real_worker(tls: TlsServer, tls_app: Orchestrator, tmp_path: Path) -> None:
    with Procs(tls.tls_url(), tmp_path) as procs:
        worker = procs.worker("tls-w1", idle_wait=30, apps=[DEMO_APP])
        wait_for(lambda: procs.blocked_clients() >= 1, "the worker to block in BLPOP", alive=[worker])
        handle = tls_app.enqueue("demo:work", [7])
        assert handle.result(timeout=10) == 7
        assert handle.info().worker == "tls-w1"
        later = tls_app.enqueue("demo:work", [1], delay=60)
        assert later.status() is S.SCHEDULED
        assert later.cancel() is S.CANCELLED
        assert worker.returncode is None


def test_tls_refuses_an_untrusted_certificate_and_plain_text(tls: TlsServer, tls_app: Orchestrator) -> None:
    refused(tls.tls_url("other-ca.pem"), redis.ConnectionError, "CERTIFICATE_VERIFY_FAILED")
    refused(f"redis://127.0.0.1:{tls.port}/0", redis.ConnectionError)
    assert tls_app.redis.dbsize() == 0


def test_tls_refuses_a_certificate_for_another_host(tls: TlsServer) -> None:
    """Signed by the trusted CA, but for redis.example.org, not 127.0.0.1: ssl_check_hostname."""
    elsewhere = TlsServer()
    elsewhere.certs = tls.certs
    elsewhere.args = tls_args(elsewhere.port, tls.certs, "elsewhere")
    elsewhere.ready_url = elsewhere.tls_url().replace("ssl_check_hostname=true", "ssl_check_hostname=false")
    elsewhere.start()
    try:
        refused(elsewhere.tls_url(), redis.ConnectionError, "CERTIFICATE_VERIFY_FAILED.*mismatch")
    finally:
        elsewhere.stop()


# ------------------------------------------------------------------ JSON only


class Exploit:
    """Unpickling this creates ``marker``: proof that someone unpickled it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def test_a_base64_pickle_is_only_a_string(app: Orchestrator, r: redis.Redis, tmp_path: Path) -> None:
    blob = pickle.dumps(Exploit(tmp_path / "unpickled"))
    encoded = base64.b64encode(blob).decode()
    handle = app.enqueue("some.module:task", [encoded])
    assert r.hget(app.keys("default").task(handle.id), "args") == orjson.dumps([encoded])
    assert handle.info().args == [encoded]
    with pytest.raises(NotSerializable):
        app.enqueue("some.module:task", [blob])  # raw bytes are not JSON
    assert not (tmp_path / "unpickled").exists()


def plant_pickle(app: Orchestrator, r: redis.Redis, marker: Path) -> str:
    """Enqueue demo:work, then overwrite its args with a pickle, as a stranger with write access could."""
    handle = app.enqueue("demo:work", [1], max_retries=2)
    r.hset(app.keys("default").task(handle.id), "args", pickle.dumps(Exploit(marker)))
    return handle.id


@pytest.fixture
def procs(app: Orchestrator, redis_server: LocalRedis, tmp_path: Path) -> Iterator[Procs]:
    with Procs(redis_server.url, tmp_path) as started:
        yield started


def test_a_pickle_in_a_task_record_is_never_unpickled(app: Orchestrator, r: redis.Redis, tmp_path: Path) -> None:
    """Where a record's args are read back (a worker's claim, a producer's info), a pickle is
    at worst an error: never an object. (What the worker then does with the task is the
    next test.)"""
    marker = tmp_path / "unpickled"
    task_id = plant_pickle(app, r, marker)
    with pytest.raises(InvalidPayload, match="not JSON"):
        app.get_task(task_id)
    [lease] = run(r, app._scripts("default").claim("w1", 10, 60_000))
    assert (lease.args, lease.kwargs) == ([], {}) and "not JSON" in lease.payload_error
    assert not marker.exists(), "the pickle was unpickled"


def test_a_non_json_record_fails_its_task_and_the_worker_goes_on(app: Orchestrator, r: redis.Redis,
                                                                procs: Procs, tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    good = app.enqueue("demo:work", [3])  # claimed in the same call as the bad one
    bad = plant_pickle(app, r, marker)
    worker = procs.worker("w1", concurrency=2, apps=[DEMO_APP], lease=5, ready=False)
    wait_for(lambda: (procs.state(good.id), procs.state(bad)) == ("SUCCESS", "FAILED"), "both tasks to end",
             alive=[worker])
    assert good.result(timeout=1) == 3
    error, attempts = r.hmget(app.keys("default").task(bad), "error", "attempts")  # args hold bytes: read raw
    assert error is not None and "JSON" in orjson.loads(error)["message"], error
    assert attempts == b"1", "a record that cannot be decoded fails at once, no retry"
    assert not marker.exists()
    assert worker.returncode is None


@pytest.mark.parametrize(
    "field, value",
    [("timeout_ms", "1e3"), ("max_retries", "x"), ("priority", "x"), ("name", b"demo:\xffwork"), ("name", None)],
)
def test_a_malformed_record_fails_alone_and_its_batch_runs(app: Orchestrator, r: redis.Redis, procs: Procs,
                                                          field: str, value: str | bytes | None) -> None:
    """Issue 11: one bad record in a claimed batch used to cost every task of the batch an
    attempt ("lease expired"), or (a missing name) to lose the batch. Now the bad one ends
    FAILED with a MalformedRecord error, at once, and the others run."""
    good = app.enqueue_many([app.request("demo:work", [i], max_retries=0) for i in range(4)])
    bad = app.enqueue("demo:work", [9], max_retries=2, priority=0)  # first in the batch
    key = app.keys("default").task(bad.id)
    if value is None:
        r.hdel(key, field)
    else:
        r.hset(key, field, value)
    worker = procs.worker("w1", concurrency=8, apps=[DEMO_APP], lease=5, ready=False)
    wait_for(lambda: all(procs.state(h.id) == "SUCCESS" for h in good), "the good tasks to succeed", alive=[worker])
    assert [h.result(timeout=1) for h in good] == [0, 1, 2, 3]
    wait_for(lambda: procs.state(bad.id) == "FAILED", "the bad task to fail", alive=[worker])
    error, attempts = r.hmget(key, "error", "attempts")
    assert error is not None and orjson.loads(error)["type"] == "MalformedRecord", error
    assert attempts is None, "moved aside by claim: never run, no attempt counted (absent: 0, #18)"
    assert worker.returncode is None
