"""The Lua transitions, one typed function per script: the only caller of EVALSHA.

Owns loading ``lua/*.lua`` (each prefixed with the ``lua/_lib.lua`` definitions it uses,
see luasource.py), building each call's
KEYS and ARGV, decoding its reply into the typed values of ``replies``, mapping the
scripts' error codes to exceptions, and recovering from NOSCRIPT. Building and decoding are pure: a
``Call`` is data; ``run`` / ``arun`` are the only functions that do I/O.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Generic, TypeVar, cast

import hiredis
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import NoScriptError, OutOfMemoryError, ResponseError

from .errors import OutOfMemory, from_script_error
from .keys import QueueKeys
from .luasource import Library, join, literals, parse
from .metrics_records import lua_constants
from .models import RECORD, REQUIRED, REQUIRED_FIELDS, FailMode, TaskState
from .reading import UNREACHABLE
from .replies import Enqueued as Enqueued
from .replies import FailReply as FailReply
from .replies import FireReply as FireReply
from .replies import HeartbeatReply as HeartbeatReply
from .replies import Lease as Lease
from .replies import PromoteReply as PromoteReply
from .replies import Reaped as Reaped
from .replies import ReapReply as ReapReply
from .replies import RetryPage as RetryPage
from .replies import RollupReply as RollupReply
from .replies import TaskSpec as TaskSpec
from .replies import decode_lease, ms_or_none, strict_text, strings

T = TypeVar("T")
Arg = str | bytes | int | float


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

    def __init__(self, calls: Sequence[Call[Any]]) -> None:
        self.calls = calls
        self.results: list[Any] = [None] * len(calls)
        self.todo = list(range(len(calls)))
        self.passes = 0
        self.resent = False
        self.missing: list[int] = []  # this pass's calls that met NOSCRIPT

    @property
    def done(self) -> bool:
        return not self.todo

    def packed(self) -> bytes:
        self.passes += 1
        if self.passes > 4:
            raise RuntimeError("scripts keep vanishing from Redis (NOSCRIPT after loading them)")
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

    def end_pass(self) -> set[str]:
        """After every reply of a pass: the sources of the scripts Redis lacked."""
        self.todo, self.missing = self.missing, []
        return {s.source for i in self.todo if (s := self.calls[i].script) is not None}


def _reply(read: Callable[[], Any]) -> Any:
    try:
        return read()
    except ResponseError as exc:  # a script's error reply: that call's result, not the exchange's
        return exc


def run_many(client: Redis, calls: Sequence[Call[Any]]) -> list[Any]:
    """Send ``calls`` in one round trip on a sync client. Each result is that call's
    decoded reply, or the exception it raised (script errors mapped to OrchestratorError).

    Commands are packed by hiredis and written on one pooled connection: redis-py's own
    command path costs about twice the round trip itself.
    """
    exchange = _Exchange(calls)
    while not exchange.done:
        packed = exchange.packed()
        pool = client.connection_pool
        conn = pool.get_connection()
        try:
            conn.send_packed_command([packed])  # type: ignore[no-untyped-call]
            for i in exchange.todo:
                exchange.settle(i, _reply(conn.read_response))
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
    return exchange.results


async def arun_many(client: AsyncRedis, calls: Sequence[Call[Any]]) -> list[Any]:
    """``run_many`` for an asyncio client."""
    exchange = _Exchange(calls)
    while not exchange.done:
        packed = exchange.packed()
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
    return exchange.results


def _one(result: Any) -> Any:
    if isinstance(result, BaseException):
        raise result
    return result


def run(client: Redis, call: Call[T]) -> T:
    """Send one call on a sync client; return its decoded reply or raise its error."""
    result: T = _one(run_many(client, [call])[0])
    return result


async def arun(client: AsyncRedis, call: Call[T]) -> T:
    """Send one call on an asyncio client; return its decoded reply or raise its error."""
    result: T = _one((await arun_many(client, [call]))[0])
    return result


# ------------------------------------------------------------------------ transitions


class Transitions:
    """Builds the script calls of one queue."""

    def __init__(self, keys: QueueKeys, *, events_maxlen: int = 10_000, clock_offset_ms: int = 0):
        self.keys = keys
        self._common: tuple[Arg, ...] = (keys.base, clock_offset_ms, events_maxlen)

    def _call(
        self,
        name: str,
        keys: Sequence[str],
        args: Sequence[Arg],
        decode: Callable[[Any], T],
        *,
        resend_safe: bool = True,
    ) -> Call[T]:
        return Call(script(name), keys, (*self._common, *args), decode, resend_safe)

    def enqueue(self, specs: Sequence[TaskSpec], *, max_payload: int) -> Call[list[Enqueued]]:
        k = self.keys
        args: list[Arg] = [max_payload, k.queue, len(specs)]
        for s in specs:  # the script's 13 values per task, in TaskSpec's field order
            args += s if s.jitter.__class__ is int else (*s[:9], int(s.jitter), *s[10:])

        def decode(reply: list[Any]) -> list[Enqueued]:
            return [Enqueued(strict_text(reply[i]), bool(reply[i + 1])) for i in range(0, len(reply), 2)]

        keys = [k.pending, k.scheduled, k.stats, k.events, k.wake, k.metrics, k.names]
        return self._call("enqueue", keys, args, decode)

    def claim(self, worker: str, n: int, lease_ms: int) -> Call[list[Lease]]:
        k = self.keys
        queue = k.queue

        def decode(reply: list[Any]) -> list[Lease]:
            return [decode_lease(queue, reply[i : i + 9]) for i in range(0, len(reply), 9)]

        # Not resent: a claim whose reply was lost took tasks nobody runs (the reaper frees them).
        keys = [k.pending, k.running, k.stats, k.events, k.wake, k.failed, k.tokens, k.metrics, k.paused]
        return self._call("claim", keys, [worker, n, lease_ms], decode, resend_safe=False)

    def heartbeat(
        self,
        worker: str,
        lease_ms: int,
        info: Mapping[str, Arg],
        leases: Iterable[tuple[str, str]],
    ) -> Call[HeartbeatReply]:
        k = self.keys
        args: list[Arg] = [worker, lease_ms, len(info)]
        for field, value in info.items():
            args += [field, value]
        for task_id, token in leases:
            args += [task_id, token]

        def decode(reply: list[Any]) -> HeartbeatReply:
            return HeartbeatReply(strings(reply[0]), strings(reply[1]), int(reply[2]))

        return self._call("heartbeat", [k.workers, k.worker(worker), k.running], args, decode)

    def deregister(self, worker: str) -> Call[HeartbeatReply]:
        return self.heartbeat(worker, 0, {}, ())

    def complete(self, task_id: str, token: str, result: bytes, ttl_ms: int) -> Call[int]:
        k = self.keys
        return self._call(
            "complete",
            [k.running, k.done, k.stats, k.events, k.failed, k.metrics],
            [task_id, token, result, ttl_ms],
            int,
        )

    def fail(
        self,
        task_id: str,
        token: str,
        error: bytes,
        *,
        mode: FailMode | str = FailMode.RETRY,  # a str reaches the script as is (tests send bad ones)
        ttl_ms: int = 0,
        seed: int | None = None,
    ) -> Call[FailReply]:
        k = self.keys
        if seed is None:
            seed = random.getrandbits(31)

        def decode(reply: list[Any]) -> FailReply:
            run_at = strict_text(reply[1])
            return FailReply(TaskState(strict_text(reply[0])), int(run_at) if run_at else None)

        return self._call(
            "fail",
            [k.running, k.retrying, k.failed, k.cancelled, k.stats, k.events, k.metrics],
            [task_id, token, error, seed, mode.value if isinstance(mode, FailMode) else mode, ttl_ms],
            decode,
        )

    def release(self, leases: Iterable[tuple[str, str]], *, ttl_ms: int = 0) -> Call[list[str]]:
        k = self.keys
        args: list[Arg] = [ttl_ms]
        for task_id, token in leases:
            args += [task_id, token]
        keys = [k.running, k.pending, k.stats, k.events, k.wake, k.cancelled, k.failed, k.metrics]
        return self._call("release", keys, args, strings)

    def promote(self, limit: int) -> Call[PromoteReply]:
        k = self.keys
        return self._call(
            "promote",
            [k.scheduled, k.pending, k.stats, k.events, k.wake, k.failed, k.retrying],
            [limit],
            lambda r: PromoteReply(int(r[0]), bool(r[1])),
        )

    def reap(self, limit: int, seed: int | None = None, *, ttl_ms: int = 0) -> Call[ReapReply]:
        k = self.keys
        if seed is None:
            seed = random.getrandbits(31)

        def decode(reply: list[Any]) -> ReapReply:
            t = strings(reply[0])
            w = strings(reply[1])
            return ReapReply(
                tasks=[Reaped(t[i], t[i + 1], TaskState(t[i + 2])) for i in range(0, len(t), 3)],
                dead_workers=[(w[i], ms_or_none(w[i + 1])) for i in range(0, len(w), 2)],
                more=bool(reply[2]),
            )

        return self._call(
            "reap",
            [k.running, k.retrying, k.failed, k.stats, k.events, k.workers, k.cancelled, k.metrics],
            [limit, seed, ttl_ms],
            decode,
        )

    def cancel(self, task_id: str, ttl_ms: int) -> Call[TaskState]:
        k = self.keys
        return self._call(
            "cancel",
            [k.pending, k.scheduled, k.cancelled, k.stats, k.events, k.failed, k.retrying, k.metrics],
            [task_id, ttl_ms, k.cancels],
            lambda r: TaskState(strict_text(r)),
        )

    def pause(self, on: bool) -> Call[bool]:
        """Pause (``on``) or resume the queue; True when that changed it."""
        k = self.keys
        return self._call("pause", [k.paused, k.events, k.wake], [1 if on else 0], lambda r: bool(r))

    def run_now(self, task_id: str) -> Call[TaskState]:
        """A SCHEDULED or RETRYING task to PENDING at once; the state it left."""
        k = self.keys
        return self._call(
            "run_now",
            [k.scheduled, k.retrying, k.pending, k.stats, k.events, k.wake],
            [task_id],
            lambda r: TaskState(strict_text(r)),
            resend_safe=False,  # a resend would answer BAD_STATE for what it just moved
        )

    def delete(self, task_id: str) -> Call[TaskState | None]:
        """Delete a task that is not RUNNING; the state it had (None: its record did not say)."""
        k = self.keys

        def decode(reply: Any) -> TaskState | None:
            state = strict_text(reply)
            return TaskState(state) if state else None

        return self._call(
            "delete",
            [k.pending, k.scheduled, k.retrying, k.failed, k.done, k.cancelled, k.stats, k.events],
            [task_id],
            decode,
            resend_safe=False,  # a resend would answer NOT_FOUND for what it just deleted
        )

    def retry_failed(self, task_ids: Sequence[str] = (), limit: int = 1000) -> Call[list[str]]:
        """The named tasks, or (none named) the first page of the failed set: the ids moved."""
        if not task_ids:
            page = self.retry_failed_page(limit)
            return Call(page.script, page.keys, page.args, lambda r: page.decode(r).moved)
        k = self.keys
        return self._call(
            "retry_failed",
            [k.failed, k.pending, k.stats, k.events, k.wake],
            [limit, 0, *task_ids],
            strings,
            resend_safe=False,  # by id, a resend would answer BAD_STATE for what it just moved
        )

    def retry_failed_page(self, limit: int, offset: int = 0) -> Call[RetryPage]:
        """Up to ``limit`` entries of the failed set from ``offset``: see RetryPage."""
        k = self.keys
        return self._call(
            "retry_failed",
            [k.failed, k.pending, k.stats, k.events, k.wake],
            [limit, offset],
            lambda r: RetryPage(strings(r[0]), int(r[1]), bool(r[2])),
        )

    def purge(self, index: str, limit: int) -> Call[int]:
        k = self.keys
        allowed = {k.pending, k.scheduled, k.retrying, k.failed, k.done, k.cancelled}
        if index not in allowed:
            raise ValueError(f"purge takes pending, scheduled, retrying, failed, done or cancelled, not {index!r}")
        return self._call("purge", [index, k.stats, k.events], [limit], int)

    def rollup(self, limit: int = 8) -> Call[RollupReply]:
        """Sample the live workers' load into this minute's series (once a minute) and roll up
        at most ``limit`` complete quarter hours (each once, whoever calls)."""
        k = self.keys
        return self._call(
            "rollup",
            [k.workers, k.rolled, k.stats],
            [limit],
            lambda r: RollupReply(bool(r[0]), int(r[1]), bool(r[2]), int(r[3])),
        )

    # ------------------------------------------------------------ periodic schedules

    def schedule_upsert(
        self, schedule_id: str, next_ms: int, timing: Mapping[str, str], fields: Mapping[str, str]
    ) -> Call[str]:
        """Declare a schedule: 'created', 'updated' or 'unchanged'. ``timing``: the fields
        that say when it fires (a change moves its ``since`` to now); ``fields``: the rest."""
        k = self.keys
        args: list[Arg] = [schedule_id, next_ms, len(timing)]
        for field, value in (*timing.items(), *fields.items()):
            args += [field, value]
        keys = [k.schedule(schedule_id), k.schedules, k.events]
        return self._call("schedule_upsert", keys, args, strict_text)

    def schedule_fire(
        self,
        schedule_id: str,
        expected: str,
        next_ms: int,
        task: TaskSpec,
        fire: Sequence[tuple[int, str]],
        skipped: Sequence[int] = (),
        *,
        overlap_skip: bool = False,
        previous: str = "",
        skipped_count: int | None = None,
    ) -> Call[FireReply]:
        """Fire ``fire`` (tick, task id pairs, ascending) if last_tick still is ``expected``;
        ``skipped``: the ticks the catch-up policy skipped (the newest; ``skipped_count`` in all)."""
        k = self.keys
        args: list[Arg] = [schedule_id, expected, next_ms, int(overlap_skip), previous, k.queue]
        args += [task.name, task.priority, task.args, task.kwargs, task.max_retries, task.timeout_ms]
        args += [task.backoff_ms, task.backoff_max_ms, int(task.jitter), len(fire)]
        args.append(len(skipped) if skipped_count is None else max(skipped_count, len(skipped)))
        for tick, task_id in fire:
            args += [tick, task_id]
        args += list(skipped)

        def decode(reply: list[Any]) -> FireReply:
            outcome = strict_text(reply[0])
            if outcome == "fired":
                return FireReply(outcome, int(reply[1]))
            return FireReply(outcome, 0, strict_text(reply[1]))

        keys = [k.schedule(schedule_id), k.schedules, k.pending, k.stats, k.events, k.wake, k.metrics, k.names]
        return self._call("schedule_fire", keys, args, decode)

    def schedule_remove(self, schedule_id: str) -> Call[bool]:
        k = self.keys
        keys = [k.schedule(schedule_id), k.schedules, k.events]
        return self._call("schedule_remove", keys, [schedule_id], bool)

    def schedule_pause(self, schedule_id: str, on: bool) -> Call[int]:
        """1: changed, 0: already so, -1: no such schedule."""
        k = self.keys
        keys = [k.schedule(schedule_id), k.schedules, k.events]
        return self._call("schedule_pause", keys, [schedule_id, 1 if on else 0], int)
