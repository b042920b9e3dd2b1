"""Loading the Lua scripts and sending their calls: the only code that sends EVALSHA.

Owns loading ``lua/*.lua`` (each prefixed with the ``lua/_lib.lua`` definitions it uses,
see luasource.py), the ``Call`` value (one script invocation as data, with its reply
decoder), sending calls in one round trip (``run``, ``run_many`` and their async twins),
mapping the scripts' error codes to exceptions, recovering from NOSCRIPT, and WAIT for
replicas after the calls on their own connection (``wait``: durability "replicated"); on a
Redis Cluster client the calls are routed by slot (``cluster_calls``). Does not
build any script's KEYS and ARGV (``transitions``). See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Generic, TypeVar, cast

import hiredis
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster
from redis.exceptions import NoScriptError, OutOfMemoryError, ResponseError

from . import cluster_calls
from .connection import is_cluster
from .errors import NotReplicated, OutOfMemory, from_script_error
from .luasource import Library, join, literals, parse
from .metrics_records import lua_constants
from .models import RECORD, REQUIRED, REQUIRED_FIELDS, TaskState
from .reading import UNREACHABLE

T = TypeVar("T")
Arg = str | bytes | int | float
Wait = tuple[int, int]  # (replicas, timeout ms): WAIT after a pass's calls, on their connection


def _record_lua(fields: Collection[str] = RECORD.keys()) -> str:
    """models.RECORD and TaskState as Lua tables: the one schema, ahead of _lib.lua in every script.

    Only the entries of ``fields`` (and of the required fields, always): a table constructor
    costs every call of the script about 25 ns per entry, and a script reads few fields.
    """
    rows = {name: row for name, row in RECORD.items() if name in fields or row[1] is REQUIRED}
    kinds = ", ".join(f"{name} = '{kind.value}'" for name, (kind, _) in rows.items())
    defaults = ", ".join(f"{name} = '{d}'" for name, (_, d) in rows.items() if d is not REQUIRED)
    required = ", ".join(f"'{name}'" for name in REQUIRED_FIELDS)
    states = ", ".join(f"{state.value} = true" for state in TaskState)
    return "\n".join(
        [
            "-- models.RECORD and models.TaskState, rendered by transitions.py",
            f"local RECORD_KIND = {{{kinds}}}",
            f"local RECORD_DEFAULT = {{{defaults}}}",
            f"local RECORD_REQUIRED = {{{required}}}",
            "-- The required field names, then its arguments (read_task's HMGET, no table built).",
            "local function with_required(...)",
            f"  return {required}, ...",
            "end",
            f"local TASK_STATES = {{{states}}}",
            "-- metrics_records: histogram bounds (ms), label cap, series retention",
            *lua_constants(),
        ]
    )


_RECORD_LUA = _record_lua()


@functools.cache
def library() -> Library:
    """The record schema and ``lua/_lib.lua``, split into definitions (parsed once)."""
    lib = resources.files(__package__).joinpath("lua").joinpath("_lib.lua").read_text()
    return join([parse(f"{_RECORD_LUA}\n"), parse(f"{lib}\n")])


def build(body: str) -> str:
    """A script's source: ``library().build(body)``, with the record schema cut down to the
    fields the script names in a string literal (read_task takes literal field lists; a field
    it is asked for that the schema lacks fails the script loudly, in every test of it)."""
    lib = library()
    needed = lib.needed_by(body)
    named = literals(body).union(*(literals(d.text) for d in needed))
    schema = {d.names: d for d in parse(f"{_record_lua(named)}\n").definitions}
    return "".join([lib.prelude, *(schema.get(d.names, d).text for d in needed), body])


class Script:
    """One Lua script: its source (the library definitions it uses included) and SHA1."""

    def __init__(self, name: str) -> None:
        body = resources.files(__package__).joinpath("lua").joinpath(f"{name}.lua").read_text()
        self.name = name
        self.source = build(body)
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()


_SCRIPTS: dict[str, Script] = {}


def script(name: str) -> Script:
    if name not in _SCRIPTS:
        _SCRIPTS[name] = Script(name)
    return _SCRIPTS[name]


SCRIPT_NAMES = (
    "enqueue", "claim", "heartbeat", "complete", "fail", "release",
    "promote", "reap", "cancel", "retry_failed", "purge", "pause", "run_now", "delete",
    "rollup", "schedule_upsert", "schedule_fire", "schedule_remove", "schedule_pause",
    "schedule_set_aside", "progress", "watch",
)


@dataclass(frozen=True)
class Call(Generic[T]):
    """One script invocation, ready to send: pure data plus the reply decoder."""

    script: Script | None  # None: a plain command, ``args``, riding in the same round trip
    keys: Sequence[str]
    args: Sequence[Arg]
    decode: Callable[[Any], T]
    resend_safe: bool = True  # sent twice after a lost reply, it changes nothing more

    @property
    def command(self) -> tuple[Arg, ...]:
        if self.script is None:
            return tuple(self.args)
        return ("EVALSHA", self.script.sha, len(self.keys), *self.keys, *self.args)


def command(*args: Arg) -> Call[Any]:
    """A plain Redis command (``SADD key member``) to send beside script calls, in one round trip."""
    return Call(None, (), args, lambda reply: reply)


_pack = cast(Callable[[tuple[Arg, ...]], bytes], hiredis.pack_command)  # its stub types a 1-tuple
_ASKING = _pack(("ASKING",))
MAX_PASSES = 5  # a NOSCRIPT, a MOVED, an ASK and a lost connection each cost a pass


def out_of_memory(exc: Exception) -> OutOfMemory:
    return OutOfMemory(
        f"Redis is out of memory (maxmemory reached, noeviction), nothing was written: {exc}; "
        "free memory (orch purge) or raise maxmemory"
    )


class _Exchange:
    """The pure half of sending calls: what to send next and what the replies mean.

    A call whose script Redis does not have (NOSCRIPT: restarted, failed over) is sent
    again after its script is loaded; when the connection fails, the calls are sent again
    once if every one of them is safe to resend, else the error propagates.
    """

    def __init__(self, calls: Sequence[Call[Any]], wait: Wait | None = None) -> None:
        self.calls = calls
        self.wait = wait
        self.acked: int | None = None  # the fewest replicas a pass's WAIT heard from
        self.results: list[Any] = [None] * len(calls)
        self.todo = list(range(len(calls)))
        self.passes = 0
        self.resent = False
        self.missing: list[int] = []  # this pass's calls that met NOSCRIPT

    @property
    def done(self) -> bool:
        return not self.todo

    def begin_pass(self) -> None:
        self.passes += 1
        if self.passes > MAX_PASSES:
            raise RuntimeError("scripts keep vanishing from Redis (NOSCRIPT after loading them), or redirects loop")

    def pack(self, indices: Sequence[int], asking: Collection[int] = ()) -> bytes:
        """The calls ``indices``, packed; those in ``asking`` behind an ASKING (cluster)."""
        if asking:
            return b"".join((_ASKING if i in asking else b"") + _pack(self.calls[i].command) for i in indices)
        return b"".join(_pack(self.calls[i].command) for i in indices)

    def packed(self) -> bytes:
        self.begin_pass()
        return b"".join(_pack(self.calls[i].command) for i in self.todo)

    def lost(self, exc: Exception) -> None:
        if self.resent or not all(self.calls[i].resend_safe for i in self.todo):
            raise exc
        self.resent = True
        self.missing = []

    def settle(self, i: int, reply: Any) -> None:
        """Record call i's decoded reply, or its error; a NOSCRIPT reply sends it again.

        Called as each reply is read, so decoding overlaps Redis running the calls after it.
        """
        if isinstance(reply, NoScriptError):
            self.missing.append(i)
        elif isinstance(reply, OutOfMemoryError):
            self.results[i] = out_of_memory(reply)
        elif isinstance(reply, ResponseError):
            self.results[i] = from_script_error(str(reply)) or reply
        else:
            try:
                self.results[i] = self.calls[i].decode(reply)
            except Exception as exc:
                self.results[i] = exc

    @property
    def wait_command(self) -> bytes:
        """WAIT, packed, to write after a pass's calls on the same connection (WAIT counts
        the replicas that have this connection's last write); empty without ``wait``."""
        return _pack(("WAIT", *self.wait)) if self.wait is not None else b""

    def settle_wait(self, reply: Any) -> None:
        """WAIT's reply (an error reply, from a server that refuses WAIT, counts as none)."""
        got = reply if isinstance(reply, int) else 0
        self.acked = got if self.acked is None else min(self.acked, got)

    def confirmed(self) -> list[Any]:
        """The results; when WAIT heard from fewer replicas than wanted, every script call's
        reply becomes NotReplicated carrying it (a refused call wrote nothing: its error stays)."""
        if self.wait is None or self.acked is None or self.acked >= self.wait[0]:
            return self.results
        wanted, ms = self.wait
        return [
            NotReplicated(
                f"written on the primary, but {self.acked} of {wanted} replicas confirmed it within {ms} ms: "
                "a failover now could lose it", acked=self.acked, wanted=wanted, reply=result,
            ) if call.script is not None and not isinstance(result, BaseException) else result
            for call, result in zip(self.calls, self.results, strict=True)
        ]

    def end_pass(self) -> set[str]:
        """After every reply of a pass: the sources of the scripts Redis lacked."""
        self.todo, self.missing = self.missing, []
        return {s.source for i in self.todo if (s := self.calls[i].script) is not None}


def _reply(read: Callable[[], Any]) -> Any:
    try:
        return read()
    except ResponseError as exc:  # a script's error reply: that call's result, not the exchange's
        return exc


def run_many(client: Redis, calls: Sequence[Call[Any]], wait: Wait | None = None) -> list[Any]:
    """Send ``calls`` in one round trip on a sync client. Each result is that call's
    decoded reply, or the exception it raised (script errors mapped to OrchestratorError).

    Commands are packed by hiredis and written on one pooled connection: redis-py's own
    command path costs about twice the round trip itself. With ``wait`` (replicas, ms) a
    WAIT follows the calls in the same write; should it hear from fewer replicas, each
    script call's result is NotReplicated (``reply``: what the call returned).
    """
    exchange = _Exchange(calls, wait)
    if is_cluster(client):  # a RedisCluster, typed as Redis by connection.py
        cluster_calls.run_many(cast(RedisCluster, client), exchange)
        return exchange.confirmed()
    while not exchange.done:
        packed = exchange.packed() + exchange.wait_command
        pool = client.connection_pool
        conn = pool.get_connection()
        try:
            conn.send_packed_command([packed])  # type: ignore[no-untyped-call]
            for i in exchange.todo:
                exchange.settle(i, _reply(conn.read_response))
            if wait is not None:
                exchange.settle_wait(_reply(conn.read_response))
        except UNREACHABLE as exc:
            conn.disconnect()  # type: ignore[no-untyped-call]
            exchange.lost(exc)
            continue
        except BaseException:
            conn.disconnect()  # type: ignore[no-untyped-call]  # half-read: not back to the pool
            raise
        finally:
            pool.release(conn)
        for source in exchange.end_pass():
            client.script_load(source)
    return exchange.confirmed()


async def arun_many(client: AsyncRedis, calls: Sequence[Call[Any]], wait: Wait | None = None) -> list[Any]:
    """``run_many`` for an asyncio client."""
    exchange = _Exchange(calls, wait)
    if is_cluster(client):
        await cluster_calls.arun_many(cast(AsyncRedisCluster, client), exchange)
        return exchange.confirmed()
    while not exchange.done:
        packed = exchange.packed() + exchange.wait_command
        pool = client.connection_pool
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await conn.send_packed_command([packed])
            for i in exchange.todo:
                try:
                    reply = await conn.read_response()
                except ResponseError as exc:
                    reply = exc
                exchange.settle(i, reply)
            if wait is not None:
                try:
                    reply = await conn.read_response()
                except ResponseError as exc:
                    reply = exc
                exchange.settle_wait(reply)
        except UNREACHABLE as exc:
            await conn.disconnect()
            exchange.lost(exc)
            continue
        except BaseException:
            await conn.disconnect()  # a half-read connection must not go back to the pool
            raise
        finally:
            await pool.release(conn)
        for source in exchange.end_pass():
            await client.script_load(source)
    return exchange.confirmed()


def _one(result: Any) -> Any:
    if isinstance(result, BaseException):
        raise result
    return result


def run(client: Redis, call: Call[T], wait: Wait | None = None) -> T:
    """Send one call on a sync client; return its decoded reply or raise its error."""
    result: T = _one(run_many(client, [call], wait)[0])
    return result


async def arun(client: AsyncRedis, call: Call[T], wait: Wait | None = None) -> T:
    """Send one call on an asyncio client; return its decoded reply or raise its error."""
    result: T = _one((await arun_many(client, [call], wait))[0])
    return result
