"""The Lua transitions, one typed function per script.

Owns building each script call's KEYS and ARGV and decoding its reply into the typed
values of ``replies``. Building and decoding are pure: a ``Call`` is data; sending it
(``run``, ``arun``, NOSCRIPT recovery, error mapping) is ``script_calls``'s.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from .keys import QueueKeys
from .models import FailMode, TaskState
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
from .script_calls import Arg, Call, script

T = TypeVar("T")


class Transitions:
    """Builds the script calls of one queue."""

    def __init__(self, keys: QueueKeys, *, events_maxlen: int = 10_000, clock_offset_ms: int = 0):
        self.keys = keys
        self._common: tuple[Arg, ...] = (keys.base, clock_offset_ms, events_maxlen)

    @property
    def clock_offset_ms(self) -> int:
        """Added to Redis TIME by every script built from now on (tests move the queue's clock)."""
        offset = self._common[1]
        assert isinstance(offset, int)
        return offset

    @clock_offset_ms.setter
    def clock_offset_ms(self, offset: int) -> None:
        self._common = (self._common[0], offset, self._common[2])

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
        args: list[Arg] = [max_payload, len(specs)]
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

    def progress(self, task_id: str, token: str, fraction: str, data: bytes, *, max_bytes: int) -> Call[int]:
        """A RUNNING task's progress report under its lease token (``models.encode_progress``
        makes ``fraction`` and ``data``); the reply is its time (ms)."""
        return self._call("progress", [self.keys.events], [task_id, token, fraction, data, max_bytes], int)

    def watch(self, task_id: str) -> Call[str]:
        """Mark the task as waited for (its end is then published on ``keys.finished``); its state."""
        return self._call("watch", [self.keys.task(task_id)], [task_id], strict_text)

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
        args: list[Arg] = [schedule_id, expected, next_ms, int(overlap_skip), previous]
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

    def schedule_set_aside(self, schedule_id: str, until_ms: int, why: str) -> Call[bool]:
        """Move a schedule whose record does not read out of the due range until ``until_ms``
        (True), unless it is no longer due (False): so it fails alone, looked at again then."""
        k = self.keys
        keys = [k.schedule(schedule_id), k.schedules, k.events]
        return self._call("schedule_set_aside", keys, [schedule_id, until_ms, why], bool)
