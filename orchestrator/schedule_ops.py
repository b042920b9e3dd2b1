"""The periodic schedules' operator API on ``Orchestrator``: declare, list, remove, pause.

Owns ``app.schedule(...)`` (one declaration, an upsert), ``@app.periodic(...)`` (a
declaration kept in the process, sent by ``app.sync_schedules()`` or by ``orch
scheduler --app MODULE`` at start), ``app.schedules()`` (the records with their next fire
times), ``app.remove_schedule(id)``, ``app.pause_schedule(id)``, ``app.resume_schedule(id)`` and
``app.run_schedule_now(id)`` (these three with asyncio twins: ``apause_schedule``, ...).
Schedule ids are global to a deployment: a hash outside the hash tags names each id's
queue. Does not parse cron expressions nor decide which ticks fire (``schedules``), nor
fire them (``schedule_engine``, run by the scheduler).
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from redis.exceptions import ResponseError

from .errors import ConfigurationError, InvalidSchedule, ScheduleNotFound
from .keys import queues_key, schedule_ids_key
from .reading import redis_time_ms, text
from .schedules import ScheduleSpec, next_tick
from .script_calls import arun, command, run, run_many
from .shards import read_layouts
from .task_function import TaskFunction

if TYPE_CHECKING:
    from redis import Redis
    from redis.asyncio import Redis as AsyncRedis
    from typing_extensions import Unpack

    from .config import Settings
    from .encoding import EnqueueOptions
    from .handle import TaskHandle
    from .transitions import Transitions

TIMING_FIELDS = ("cron", "every", "tz", "enabled")  # a change moves the record's `since` to now
CatchUp = Literal["skip", "latest", "all"]
Overlap = Literal["allow", "skip"]


@dataclass(frozen=True)
class ScheduleInfo:
    """One schedule as stored: its spec and what the engine keeps (times in Unix ms)."""

    spec: ScheduleSpec
    next_ms: int | None  # the next fire time (None: unreadable)
    last_tick: int | None  # the newest tick handled (fired or skipped); None: none yet
    paused: bool
    created_at: int | None
    fired: int = 0
    caught_up: int = 0
    skipped: int = 0

    @property
    def id(self) -> str:
        return self.spec.id

    def as_json(self) -> dict[str, Any]:
        return {
            **self.spec.model_dump(),
            "next_ms": self.next_ms, "last_tick": self.last_tick, "paused": self.paused,
            "created_at": self.created_at, "fired": self.fired, "caught_up": self.caught_up,
            "skipped": self.skipped,
        }


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def decode_schedule(raw: Mapping[Any, Any]) -> ScheduleInfo:
    """A schedule record's fields as a ScheduleInfo (InvalidSchedule when the spec does not read)."""
    fields = {text(k): text(v) for k, v in raw.items()}
    return ScheduleInfo(
        spec=ScheduleSpec.from_redis(fields),
        next_ms=_int(fields.get("next_ms")),
        last_tick=_int(fields.get("last_tick")),
        paused=fields.get("paused") == "1",
        created_at=_int(fields.get("created_at")),
        fired=_int(fields.get("fired")) or 0,
        caught_up=_int(fields.get("caught_up")) or 0,
        skipped=_int(fields.get("skipped")) or 0,
    )


class ScheduleOperations:
    """Mixin of ``Orchestrator``: periodic schedules."""

    if TYPE_CHECKING:  # what it uses of Orchestrator
        settings: Settings
        declared_schedules: dict[str, ScheduleSpec]
        _clock_offset_ms: int

        @property
        def redis(self) -> Redis: ...

        @property
        def aredis(self) -> AsyncRedis: ...

        def _scripts(self, queue: str) -> Transitions: ...

        def task(self, fn: Callable[..., Any], /) -> TaskFunction[..., Any]: ...

        def enqueue(
            self,
            name: str,
            args: Sequence[Any] | None = None,
            kwargs: dict[str, Any] | None = None,
            **options: Unpack[EnqueueOptions],
        ) -> TaskHandle[Any]: ...

        async def aenqueue(
            self,
            name: str,
            args: Sequence[Any] | None = None,
            kwargs: dict[str, Any] | None = None,
            **options: Unpack[EnqueueOptions],
        ) -> TaskHandle[Any]: ...

    def schedule(
        self,
        id: str,
        task: str,
        *,
        cron: str | None = None,
        every: float | None = None,
        tz: str = "UTC",
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        priority: int = 5,
        queue: str = "default",
        catch_up: CatchUp = "latest",
        max_catch_up: int = 10,
        overlap: Overlap = "allow",
        enabled: bool = True,
    ) -> str:
        """Declare one schedule (an upsert): 'created', 'updated' or 'unchanged'.

        Bad input (cron, time zone, every below 1 s, task name) raises InvalidSchedule and
        writes nothing. A schedule lives in its queue: moving it is a remove and an add.
        """
        spec = ScheduleSpec(
            id=id, task=task, queue=queue, cron=cron, every=every, tz=tz, args=list(args),
            kwargs=kwargs or {}, priority=priority, catch_up=catch_up, max_catch_up=max_catch_up,
            overlap=overlap, enabled=enabled,
        )
        return self.upsert_schedule(spec)

    def upsert_schedule(self, spec: ScheduleSpec) -> str:
        """Store one ScheduleSpec (see ``schedule``)."""
        scripts = self._scripts(spec.queue)
        if spec.queue in read_layouts(self.redis, self.settings.prefix):
            raise InvalidSchedule(
                f"queue {spec.queue!r} is sharded: its workers serve its shards, so schedule onto a plain queue",
                field="queue",
            )
        held = self.redis.hget(schedule_ids_key(self.settings.prefix), spec.id)
        if held is not None and text(held) != spec.queue:
            raise InvalidSchedule(
                f"schedule {spec.id!r} lives in queue {text(held)!r}: remove it first "
                "(moving a schedule is a remove and an add)",
                field="queue",
            )
        now = redis_time_ms(self.redis) + self._clock_offset_ms
        fields = spec.to_redis()
        timing = {name: fields.pop(name) for name in TIMING_FIELDS}
        results = run_many(self.redis, [
            scripts.schedule_upsert(spec.id, next_tick(spec, now), timing, fields),
            command("HSET", schedule_ids_key(self.settings.prefix), spec.id, spec.queue),
            command("SADD", queues_key(self.settings.prefix), spec.queue),
        ])
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return str(results[0])

    def periodic(
        self,
        *,
        cron: str | None = None,
        every: float | None = None,
        name: str | None = None,
        tz: str = "UTC",
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        priority: int | None = None,
        queue: str | None = None,
        catch_up: CatchUp = "latest",
        max_catch_up: int = 10,
        overlap: Overlap = "allow",
        enabled: bool = True,
    ) -> Callable[[Any], Any]:
        """Declare a schedule of a task: ``@app.periodic(cron="*/5 * * * *")`` above
        ``@app.task`` (a plain function is registered as a task first). Its id is ``name``,
        else the task's name; its queue and priority default to the task's. Declaring keeps
        it in this process: ``app.sync_schedules()`` (or ``orch scheduler --app``) stores it."""

        def register(fn: Any) -> Any:
            task_fn: TaskFunction[..., Any] = fn if isinstance(fn, TaskFunction) else self.task(fn)
            spec = ScheduleSpec(
                id=name or task_fn.name, task=task_fn.name, queue=queue or task_fn.options.queue,
                cron=cron, every=every, tz=tz, args=list(args), kwargs=kwargs or {},
                priority=task_fn.options.priority if priority is None else priority,
                catch_up=catch_up, max_catch_up=max_catch_up, overlap=overlap, enabled=enabled,
            )
            known = self.declared_schedules.get(spec.id)
            if known is not None and known != spec:
                raise ConfigurationError(
                    f"two schedules declared with id {spec.id!r}: give each @app.periodic a name="
                )
            self.declared_schedules[spec.id] = spec
            return fn

        return register

    def sync_schedules(self) -> dict[str, str]:
        """Store every ``@app.periodic`` declaration of this process: id -> 'created',
        'updated' or 'unchanged'. Schedules not declared here are left alone."""
        return {sid: self.upsert_schedule(spec) for sid, spec in sorted(self.declared_schedules.items())}

    def prune_schedules(self, *, dry_run: bool = False) -> list[str]:
        """Remove every stored schedule this process has not declared (``@app.periodic``):
        the ids removed (or that would be, ``dry_run``). Refused when it declares none, so a
        process that imported nothing cannot remove every schedule."""
        if not self.declared_schedules:
            raise ConfigurationError("no @app.periodic declaration in this process: nothing to prune against")
        ids = sorted(text(k) for k in self.redis.hkeys(schedule_ids_key(self.settings.prefix)))
        stale = [sid for sid in ids if sid not in self.declared_schedules]
        if not dry_run:
            for sid in stale:
                self.remove_schedule(sid)
        return stale

    def _schedule_queue(self, schedule_id: str) -> str:
        return _held_queue(schedule_id, self.redis.hget(schedule_ids_key(self.settings.prefix), schedule_id))

    async def _aschedule_queue(self, schedule_id: str) -> str:
        return _held_queue(schedule_id, await self.aredis.hget(schedule_ids_key(self.settings.prefix), schedule_id))

    def schedules(self) -> list[ScheduleInfo]:
        """Every schedule of the deployment, by id (records that do not read are skipped)."""
        ids = {text(k): text(v) for k, v in self.redis.hgetall(schedule_ids_key(self.settings.prefix)).items()}
        order = sorted(ids)
        pipe = self.redis.pipeline(transaction=False)
        for sid in order:
            pipe.hgetall(self._scripts(ids[sid]).keys.schedule(sid))
        out = []
        for raw in pipe.execute(raise_on_error=False):
            if isinstance(raw, ResponseError) and str(raw).startswith("WRONGTYPE"):
                continue  # a record overwritten with another type: it does not read either
            if isinstance(raw, BaseException):
                raise raw
            if raw:
                try:
                    out.append(decode_schedule(raw))
                except InvalidSchedule:
                    continue
        return out

    def run_schedule_now(self, schedule_id: str) -> TaskHandle[Any]:
        """Enqueue the schedule's task once now, apart from its ticks (its last tick is
        untouched, so the next tick fires as planned). ScheduleNotFound when none."""
        queue = self._schedule_queue(schedule_id)
        spec = _stored_spec(schedule_id, self.redis.hgetall(self._scripts(queue).keys.schedule(schedule_id)))
        return self.enqueue(spec.task, spec.args, spec.kwargs, queue=spec.queue, priority=spec.priority)

    async def arun_schedule_now(self, schedule_id: str) -> TaskHandle[Any]:
        """``run_schedule_now`` for asyncio programs."""
        queue = await self._aschedule_queue(schedule_id)
        raw = await self.aredis.hgetall(self._scripts(queue).keys.schedule(schedule_id))
        spec = _stored_spec(schedule_id, raw)
        return await self.aenqueue(spec.task, spec.args, spec.kwargs, queue=spec.queue, priority=spec.priority)

    def remove_schedule(self, schedule_id: str) -> None:
        """Delete a schedule: it never fires again (its tasks stay). ScheduleNotFound when none."""
        queue = self._schedule_queue(schedule_id)
        results = run_many(self.redis, [
            self._scripts(queue).schedule_remove(schedule_id),
            command("HDEL", schedule_ids_key(self.settings.prefix), schedule_id),
        ])
        for result in results:
            if isinstance(result, BaseException):
                raise result

    def pause_schedule(self, schedule_id: str) -> bool:
        """Stop firing it until resumed (a deploy declaring it again does not resume it);
        True when that changed it."""
        return self._pause(schedule_id, True)

    def resume_schedule(self, schedule_id: str) -> bool:
        """Fire it again from its next tick (the ticks of the pause are not caught up)."""
        return self._pause(schedule_id, False)

    async def apause_schedule(self, schedule_id: str) -> bool:
        """``pause_schedule`` for asyncio programs."""
        return await self._apause(schedule_id, True)

    async def aresume_schedule(self, schedule_id: str) -> bool:
        """``resume_schedule`` for asyncio programs."""
        return await self._apause(schedule_id, False)

    def _pause(self, schedule_id: str, on: bool) -> bool:
        changed = run(self.redis, self._scripts(self._schedule_queue(schedule_id)).schedule_pause(schedule_id, on))
        return _paused(schedule_id, changed)

    async def _apause(self, schedule_id: str, on: bool) -> bool:
        queue = await self._aschedule_queue(schedule_id)
        return _paused(schedule_id, await arun(self.aredis, self._scripts(queue).schedule_pause(schedule_id, on)))


def _held_queue(schedule_id: str, held: bytes | str | None) -> str:
    """The queue the ids hash names for a schedule (ScheduleNotFound when it names none)."""
    if held is None:
        raise ScheduleNotFound(f"no schedule {schedule_id!r}")
    return text(held)


def _stored_spec(schedule_id: str, raw: Mapping[Any, Any]) -> ScheduleSpec:
    """The spec of a stored schedule record (ScheduleNotFound when it is gone)."""
    if not raw:
        raise ScheduleNotFound(f"no schedule {schedule_id!r}")
    return decode_schedule(raw).spec


def _paused(schedule_id: str, changed: int) -> bool:
    """schedule_pause.lua's reply: whether it changed the schedule (ScheduleNotFound: -1)."""
    if changed < 0:
        raise ScheduleNotFound(f"no schedule {schedule_id!r}")
    return changed == 1
