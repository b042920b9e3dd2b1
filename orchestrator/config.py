"""Settings: every default named and documented once, every value checked where it is built.

Owns the defaults of the producer, worker and scheduler, the bounds of every setting
(durations included: a lease of 1e-9 s or an idle wait of ``inf`` cannot work), the rules
that tie two settings together (the heartbeat against the lease), and what a Redis URL
must look like. Bad settings raise ``ConfigurationError`` naming the setting. Does not
read the environment except through ``redis_url_from_env`` (called by ``Orchestrator()``);
the CLI reads the rest at the edge. Durations are seconds here; the scripts receive
integer milliseconds.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator
from redis.connection import Connection, ConnectionPool, SSLConnection, parse_url

from . import connection
from .errors import ConfigurationError
from .keys import DEFAULT_PREFIX

DEFAULT_REDIS_URL = "redis://localhost:6379/0"
REDIS_URL_ENV = "ORCH_REDIS_URL"
PREFIX_ENV = "ORCH_PREFIX"

# Bounds of the duration settings, in seconds. The test suite runs leases of 0.5 s and
# intervals of 50 ms, so the floors stay well below those.
MIN_LEASE = 0.1
MAX_LEASE = 86_400.0  # a day
MIN_INTERVAL = 0.001  # heartbeats, idle waits, scheduler passes: a millisecond...
MAX_INTERVAL = 3_600.0  # ...to an hour
MAX_GRACE = 86_400.0
MAX_TTL = 10 * 365 * 86_400.0  # ten years; 0 keeps records forever
DEFAULT_HEARTBEAT = 5.0
HEARTBEATS_PER_LEASE = 3  # a lease survives two lost heartbeats
_DB_PATH = re.compile(r"/?(\d+)?")


def redis_url_problem(url: str) -> str | None:
    """What is wrong with ``url`` as a Redis URL, or None when redis-py can use it as it stands.

    Refuses what redis-py would silently read differently: ``redis://host/abc`` (redis-py
    uses database 0). The answer never repeats the URL: it may hold a password.
    """
    if not url.strip():
        return "it is empty; give a redis://, rediss://, unix://, redis+cluster:// or redis+sentinel:// URL"
    if url.startswith("fakeredis://"):  # an in-process fake (tests): fakes.py checks its syntax
        from . import fakes

        return fakes.url_problem(url)
    try:
        target = connection.parse(url)
        if target.kind != "standalone":
            return _unknown_option(target.options)
    except ValueError as exc:
        return f"not a usable Redis URL ({exc})"
    try:
        parse_url(url)  # type: ignore[no-untyped-call]
        path = urlsplit(url).path
    except ValueError as exc:
        return f"not a usable Redis URL ({exc})"
    if not url.startswith("unix:") and not _DB_PATH.fullmatch(path):
        return f"the database must be a number after the host (redis://host:6379/0), not {path[1:]!r}"
    return _unknown_query_option(url)


def _unknown_query_option(url: str) -> str | None:
    """A query option redis-py would pass to its connections and fail on at first use."""
    pool = ConnectionPool.from_url(url)
    try:
        pool.make_connection()  # builds a connection object, never connects
    except TypeError as exc:
        unknown = re.search(r"argument '(\w+)'", str(exc))
        return f"its query option {unknown.group(1) if unknown else '?'!r} is not a Redis connection option"
    finally:
        pool.disconnect()
    return None


def _unknown_option(options: dict[str, Any]) -> str | None:
    """``_unknown_query_option`` for the options of a cluster or sentinel URL."""
    kwargs = dict(options)
    kind = SSLConnection if kwargs.pop("ssl", False) else Connection
    try:
        kind(**kwargs)  # builds a connection object, never connects
    except TypeError as exc:
        unknown = re.search(r"argument '(\w+)'", str(exc))
        return f"its query option {unknown.group(1) if unknown else '?'!r} is not a Redis connection option"
    return None


def check_redis_url(url: str, what: str = "redis_url") -> str:
    """``url`` if it is usable, else ConfigurationError naming ``what`` (a setting or variable)."""
    problem = redis_url_problem(url)
    if problem is not None:
        raise ConfigurationError(f"invalid {what}: {problem}", field=what)
    return url


def redis_url_from_env(environ: Mapping[str, str] = os.environ) -> str:
    """``ORCH_REDIS_URL``, checked; only an unset variable means the default URL."""
    if REDIS_URL_ENV not in environ:
        return DEFAULT_REDIS_URL
    url = environ[REDIS_URL_ENV]
    if not url.strip():
        raise ConfigurationError(
            f"{REDIS_URL_ENV} is set but empty: unset it for the default {DEFAULT_REDIS_URL}, or give a URL",
            field=REDIS_URL_ENV,
        )
    return check_redis_url(url, REDIS_URL_ENV)


class _Checked(BaseModel):
    """Settings that raise ConfigurationError (naming each bad setting), not pydantic's error."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, hide_input_in_errors=True)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except pydantic.ValidationError as exc:
            raise settings_error(exc) from exc


def settings_error(exc: pydantic.ValidationError) -> ConfigurationError:
    """One ConfigurationError for every problem of ``exc``; ``field`` is the first setting named."""
    problems = [(".".join(map(str, e["loc"])), e["msg"].removeprefix("Value error, ")) for e in exc.errors()]
    text = "; ".join(f"invalid setting {name or '?'}: {msg}" for name, msg in problems)
    return ConfigurationError(text, field=problems[0][0] if problems else None)


Durability = Literal["fast", "replicated"]
MAX_REPLICAS = 64
MAX_REPLICA_TIMEOUT = 1.5  # seconds: WAIT must end before the socket times out (2 s at least)


class Settings(_Checked):
    """What producers, workers and schedulers share about a deployment."""

    redis_url: str = Field(
        default=DEFAULT_REDIS_URL,
        description="Redis to use (redis://, rediss://, unix://, redis+cluster://, redis+sentinel://).",
    )
    prefix: str = Field(
        default=DEFAULT_PREFIX, pattern=r"^[A-Za-z0-9_.\-]{1,32}$", description="Start of every key name."
    )
    max_payload_bytes: int = Field(
        default=512 * 1024, ge=1, description="Largest encoded args + kwargs accepted at enqueue."
    )
    result_ttl: float = Field(
        default=86400.0, ge=0, le=MAX_TTL,
        description="Seconds a finished task's record and result are kept; 0 keeps them forever.",
    )
    events_maxlen: int = Field(
        default=10_000, ge=0, description="Approximate length the event stream is capped at; 0 disables events."
    )
    lease_timeout: float = Field(
        default=30.0, ge=MIN_LEASE, le=MAX_LEASE,
        description="Seconds a claim stays valid without a heartbeat before the reaper requeues it.",
    )
    durability: Durability = Field(
        default="fast",
        description="fast: a write is acknowledged once the primary has it (replication is asynchronous: "
        "a failover can lose the last ones). replicated: enqueue, complete, fail and cancel also wait "
        "(WAIT) until `replicas` replicas have it, else raise NotReplicated.",
    )
    replicas: int = Field(
        default=1, ge=1, le=MAX_REPLICAS, description="Replicas that must confirm a write (durability replicated)."
    )
    replica_timeout: float = Field(
        default=1.0, ge=MIN_INTERVAL, le=MAX_REPLICA_TIMEOUT,
        description="Seconds a write waits for the replicas' confirmation (durability replicated); "
        "at most 1.5, below the connections' socket timeout.",
    )

    @property
    def replication(self) -> tuple[int, int] | None:
        """(replicas, timeout ms) for WAIT after acknowledged writes; None with fast durability."""
        if self.durability == "fast":
            return None
        return self.replicas, max(1, round(self.replica_timeout * 1000))

    @field_validator("redis_url")
    @classmethod
    def _usable_url(cls, url: str) -> str:
        problem = redis_url_problem(url)
        if problem is not None:
            raise ValueError(problem)
        return url


PoolKind = Literal["asyncio", "thread", "process"]
LoopKind = Literal["auto", "uvloop", "asyncio"]


class WorkerSettings(_Checked):
    """How one ``orch worker`` process runs."""

    queues: tuple[tuple[str, int], ...] = Field(
        default=(("default", 1),), description="Queues with weights; weight 1 everywhere means strict order."
    )
    concurrency: int = Field(default=10, ge=1, le=10_000, description="Tasks run at once.")
    pool: PoolKind = Field(default="thread", description="Where sync task functions run; async ones run on the loop.")
    loop: LoopKind = Field(default="auto", description="Event loop: uvloop when installed (auto), or asyncio's own.")
    name: str | None = Field(default=None, description="Worker id; default <host>-<pid>.")
    heartbeat_interval: float | None = Field(
        default=None, ge=MIN_INTERVAL, le=MAX_INTERVAL,
        description=f"Seconds between heartbeats; at most a third of the lease timeout.  "
        f"[default: a third of the lease timeout, at most {DEFAULT_HEARTBEAT:g}]",
    )
    grace: float = Field(
        default=30.0, ge=0, le=MAX_GRACE, description="Seconds running tasks get to finish on SIGTERM."
    )
    idle_wait: float = Field(
        default=1.0, ge=MIN_INTERVAL, le=MAX_INTERVAL,
        description="Longest block on the wake-up key before looking again.",
    )
    apps: tuple[str, ...] = Field(default=(), description="Modules imported at start to register tasks.")
    strict: bool = Field(default=False, description="Refuse to start on an unsafe Redis (eviction, no persistence).")


    def heartbeat_for(self, lease_timeout: float) -> float:
        """The heartbeat interval to use with ``lease_timeout``: ConfigurationError when it is
        above a third of the lease (healthy workers would lose their leases)."""
        most = lease_timeout / HEARTBEATS_PER_LEASE
        if self.heartbeat_interval is None:
            return min(DEFAULT_HEARTBEAT, most)
        if self.heartbeat_interval > most:
            raise ConfigurationError(
                f"heartbeat interval {self.heartbeat_interval:g} s is above a third of the lease timeout "
                f"{lease_timeout:g} s: leases would expire under healthy workers; use a heartbeat interval "
                f"of at most {most:g} s or a lease timeout of at least {self.heartbeat_interval * 3:g} s",
                field="heartbeat_interval",
            )
        return self.heartbeat_interval


class SchedulerSettings(_Checked):
    """How one ``orch scheduler`` (or ``orch reaper``) process runs."""

    queues: tuple[str, ...] = Field(default=(), description="Queues to serve; empty means every known queue.")
    interval: float = Field(default=0.5, ge=MIN_INTERVAL, le=MAX_INTERVAL, description="Seconds between passes.")
    batch: int = Field(default=500, ge=1, le=10_000, description="Most tasks one script call moves.")
    promote: bool = Field(default=True, description="Promote due scheduled and retrying tasks.")
    reap: bool = Field(default=True, description="Requeue tasks whose lease expired.")
    rollups: bool = Field(
        default=True,
        description="Sample the live workers' load into each minute's series and roll complete quarter hours up.",
    )
    strict: bool = Field(default=False, description="Refuse to start on an unsafe Redis (eviction, no persistence).")
