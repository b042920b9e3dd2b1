"""The Lua transitions, one typed function per script: the only caller of EVALSHA.

Owns loading ``lua/*.lua`` (each prefixed with ``lua/_lib.lua``), building each call's
KEYS and ARGV, decoding its reply into typed values, mapping the scripts' error codes
to exceptions, and recovering from NOSCRIPT. Building and decoding are pure: a
``Call`` is data; ``run`` / ``arun`` are the only functions that do I/O.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Generic, TypeVar, cast

import hiredis
import orjson
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import NoScriptError, ResponseError

from .errors import from_script_error
from .keys import QueueKeys
from .models import TaskState

T = TypeVar("T")
Arg = str | bytes | int | float


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Script:
    """One Lua script: its source (library included) and SHA1."""

    def __init__(self, name: str) -> None:
        lua = resources.files(__package__).joinpath("lua")
        library = lua.joinpath("_lib.lua").read_text()
        body = lua.joinpath(f"{name}.lua").read_text()
        self.name = name
        self.source = f"{library}\n{body}"
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()


_SCRIPTS: dict[str, Script] = {}


def script(name: str) -> Script:
    if name not in _SCRIPTS:
        _SCRIPTS[name] = Script(name)
    return _SCRIPTS[name]


SCRIPT_NAMES = (
    "enqueue", "claim", "heartbeat", "complete", "fail", "release",
    "promote", "reap", "cancel", "retry_failed", "purge",
)


@dataclass(frozen=True)
class Call(Generic[T]):
    """One script invocation, ready to send: pure data plus the reply decoder."""

    script: Script
    keys: Sequence[str]
    args: Sequence[Arg]
    decode: Callable[[Any], T]


def _raise_mapped(exc: ResponseError) -> None:
    mapped = from_script_error(str(exc))
    if mapped is not None:
        raise mapped from None


def run(client: Redis, call: Call[T]) -> T:
    """Send ``call`` on a sync client, loading the script after a NOSCRIPT."""
    try:
        try:
            reply = client.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
        except NoScriptError:
            client.script_load(call.script.source)
            reply = client.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
    except ResponseError as exc:
        _raise_mapped(exc)
        raise
    return call.decode(reply)


async def arun(client: AsyncRedis, call: Call[T]) -> T:
    """Send ``call`` on an asyncio client, loading the script after a NOSCRIPT."""
    try:
        try:
            reply = await client.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
        except NoScriptError:
            await client.script_load(call.script.source)
            reply = await client.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
    except ResponseError as exc:
        _raise_mapped(exc)
        raise
    return call.decode(reply)


async def arun_many(client: AsyncRedis, calls: Sequence[Call[Any]]) -> list[Any]:
    """Send ``calls`` in one pipeline (one round trip). Each item of the result is that
    call's decoded reply, or the exception it raised (mapped like ``arun``'s)."""
    results: list[Any] = [None] * len(calls)
    todo = list(range(len(calls)))
    for _ in range(2):  # a second pass after loading scripts Redis did not have
        commands = [("EVALSHA", calls[i].script.sha, len(calls[i].keys), *calls[i].keys, *calls[i].args) for i in todo]
        replies = await _send_all(client, commands)
        missing = []
        for i, reply in zip(todo, replies, strict=True):
            if isinstance(reply, NoScriptError):
                missing.append(i)
            elif isinstance(reply, ResponseError):
                results[i] = from_script_error(str(reply)) or reply
            else:
                try:
                    results[i] = calls[i].decode(reply)
                except Exception as exc:
                    results[i] = exc
        if not missing:
            break
        for source in {calls[i].script.source for i in missing}:
            await client.script_load(source)
        todo = missing
    return results


async def _send_all(client: AsyncRedis, commands: list[tuple[Arg, ...]]) -> list[Any]:
    """Write ``commands`` at once on one pooled connection and read every reply in order.

    Packs with hiredis (C) rather than redis-py's Python packer: on the worker's hot path
    that is most of the client-side cost of a pipeline. An error reply is returned in its
    place; a failure of the connection itself drops the connection and raises.
    """
    pool = client.connection_pool
    conn = await pool.get_connection()  # type: ignore[no-untyped-call]
    pack = cast(Callable[[tuple[Arg, ...]], bytes], hiredis.pack_command)  # its stub types a 1-tuple
    try:
        await conn.send_packed_command(b"".join(pack(c) for c in commands))
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(await conn.read_response())
            except ResponseError as exc:
                replies.append(exc)
        return replies
    except BaseException:
        await conn.disconnect()  # a half-read connection must not go back to the pool
        raise
    finally:
        await pool.release(conn)


# ---------------------------------------------------------------------------- replies


@dataclass(frozen=True)
class TaskSpec:
    """Everything enqueue needs to create one task, already validated and encoded."""

    id: str
    name: str
    priority: int
    args: bytes
    kwargs: bytes
    max_retries: int
    timeout_ms: int
    backoff_ms: int
    backoff_max_ms: int
    jitter: bool
    delay_ms: int
    key: str = ""


@dataclass(frozen=True)
class Enqueued:
    id: str
    created: bool  # False: an unfinished task already held the idempotency key


@dataclass(frozen=True)
class Lease:
    """A claimed task: what the worker runs and the token that proves it holds it."""

    queue: str
    task_id: str
    token: str
    name: str
    args: list[Any]
    kwargs: dict[str, Any]
    attempt: int
    max_retries: int
    timeout_ms: int
    priority: int


@dataclass(frozen=True)
class HeartbeatReply:
    lost: list[str]  # tasks whose lease this worker no longer holds
    cancel: list[str]  # tasks with a cancel request
    now_ms: int


@dataclass(frozen=True)
class FailReply:
    state: TaskState
    run_at: int | None


@dataclass(frozen=True)
class Reaped:
    task_id: str
    worker: str
    state: TaskState


@dataclass(frozen=True)
class ReapReply:
    tasks: list[Reaped]
    dead_workers: list[tuple[str, int | None]]  # worker id, last heartbeat ms
    more: bool


@dataclass(frozen=True)
class PromoteReply:
    moved: int
    more: bool


def _strings(reply: Iterable[bytes | str]) -> list[str]:
    return [_text(v) for v in reply]


# ------------------------------------------------------------------------ transitions


class Transitions:
    """Builds the script calls of one queue."""

    def __init__(self, keys: QueueKeys, *, events_maxlen: int = 10_000, clock_offset_ms: int = 0):
        self.keys = keys
        self._common: tuple[Arg, ...] = (keys.base, clock_offset_ms, events_maxlen)

    def _call(self, name: str, keys: Sequence[str], args: Sequence[Arg], decode: Callable[[Any], T]) -> Call[T]:
        return Call(script(name), keys, (*self._common, *args), decode)

    def enqueue(self, specs: Sequence[TaskSpec], *, max_payload: int) -> Call[list[Enqueued]]:
        k = self.keys
        args: list[Arg] = [max_payload, k.queue, len(specs)]
        for s in specs:
            args += [
                s.id, s.name, s.priority, s.args, s.kwargs, s.max_retries, s.timeout_ms,
                s.backoff_ms, s.backoff_max_ms, int(s.jitter), s.delay_ms, s.key,
            ]

        def decode(reply: list[Any]) -> list[Enqueued]:
            return [Enqueued(_text(reply[i]), bool(reply[i + 1])) for i in range(0, len(reply), 2)]

        return self._call("enqueue", [k.pending, k.scheduled, k.stats, k.events, k.wake], args, decode)

    def claim(self, worker: str, n: int, lease_ms: int) -> Call[list[Lease]]:
        k = self.keys
        queue = k.queue

        def decode(reply: list[Any]) -> list[Lease]:
            return [
                Lease(
                    queue=queue,
                    task_id=_text(reply[i]),
                    token=_text(reply[i + 1]),
                    name=_text(reply[i + 2]),
                    args=orjson.loads(reply[i + 3]),
                    kwargs=orjson.loads(reply[i + 4]),
                    attempt=int(reply[i + 5]),
                    max_retries=int(reply[i + 6]),
                    timeout_ms=int(reply[i + 7]),
                    priority=int(reply[i + 8]),
                )
                for i in range(0, len(reply), 9)
            ]

        return self._call("claim", [k.pending, k.running, k.stats, k.events, k.wake], [worker, n, lease_ms], decode)

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
            return HeartbeatReply(_strings(reply[0]), _strings(reply[1]), int(reply[2]))

        return self._call("heartbeat", [k.workers, k.worker(worker), k.running], args, decode)

    def deregister(self, worker: str) -> Call[HeartbeatReply]:
        return self.heartbeat(worker, 0, {}, ())

    def complete(self, task_id: str, token: str, result: bytes, ttl_ms: int) -> Call[int]:
        k = self.keys
        return self._call(
            "complete", [k.running, k.done, k.stats, k.events], [task_id, token, result, ttl_ms], int
        )

    def fail(
        self,
        task_id: str,
        token: str,
        error: bytes,
        *,
        mode: str = "retry",
        ttl_ms: int = 0,
        seed: int | None = None,
    ) -> Call[FailReply]:
        k = self.keys
        if seed is None:
            seed = random.getrandbits(31)

        def decode(reply: list[Any]) -> FailReply:
            run_at = _text(reply[1])
            return FailReply(TaskState(_text(reply[0])), int(run_at) if run_at else None)

        return self._call(
            "fail",
            [k.running, k.scheduled, k.failed, k.done, k.stats, k.events],
            [task_id, token, error, seed, mode, ttl_ms],
            decode,
        )

    def release(self, leases: Iterable[tuple[str, str]], *, ttl_ms: int = 0) -> Call[list[str]]:
        k = self.keys
        args: list[Arg] = [ttl_ms]
        for task_id, token in leases:
            args += [task_id, token]
        return self._call("release", [k.running, k.pending, k.stats, k.events, k.wake, k.done], args, _strings)

    def promote(self, limit: int) -> Call[PromoteReply]:
        k = self.keys
        return self._call(
            "promote",
            [k.scheduled, k.pending, k.stats, k.events, k.wake],
            [limit],
            lambda r: PromoteReply(int(r[0]), bool(r[1])),
        )

    def reap(self, limit: int, seed: int | None = None, *, ttl_ms: int = 0) -> Call[ReapReply]:
        k = self.keys
        if seed is None:
            seed = random.getrandbits(31)

        def decode(reply: list[Any]) -> ReapReply:
            t = _strings(reply[0])
            w = _strings(reply[1])
            return ReapReply(
                tasks=[Reaped(t[i], t[i + 1], TaskState(t[i + 2])) for i in range(0, len(t), 3)],
                dead_workers=[(w[i], int(w[i + 1]) if w[i + 1] else None) for i in range(0, len(w), 2)],
                more=bool(reply[2]),
            )

        return self._call(
            "reap",
            [k.running, k.scheduled, k.failed, k.stats, k.events, k.workers, k.done],
            [limit, seed, ttl_ms],
            decode,
        )

    def cancel(self, task_id: str, ttl_ms: int) -> Call[TaskState]:
        k = self.keys
        return self._call(
            "cancel",
            [k.pending, k.scheduled, k.done, k.stats, k.events],
            [task_id, ttl_ms],
            lambda r: TaskState(_text(r)),
        )

    def retry_failed(self, task_ids: Sequence[str] = (), limit: int = 1000) -> Call[list[str]]:
        k = self.keys
        return self._call(
            "retry_failed", [k.failed, k.pending, k.stats, k.events, k.wake], [limit, *task_ids], _strings
        )

    def purge(self, index: str, limit: int) -> Call[int]:
        k = self.keys
        allowed = {k.pending, k.scheduled, k.failed, k.done}
        if index not in allowed:
            raise ValueError(f"purge takes pending, scheduled, failed or done, not {index!r}")
        return self._call("purge", [index, k.stats, k.events], [limit], int)
