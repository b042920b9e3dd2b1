"""Settings: every default named and documented once.

Owns the defaults of the producer, worker and scheduler. Does not read the
environment: the CLI (and ``Orchestrator()`` for ``ORCH_REDIS_URL``) does, at the edge.
Durations are seconds here; the scripts receive integer milliseconds.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_REDIS_URL = "redis://localhost:6379/0"
REDIS_URL_ENV = "ORCH_REDIS_URL"
PREFIX_ENV = "ORCH_PREFIX"


class Settings(BaseModel):
    """What producers, workers and schedulers share about a deployment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    redis_url: str = Field(default=DEFAULT_REDIS_URL, description="Redis to use (redis://, rediss://, unix://).")
    prefix: str = Field(
        default="orch", pattern=r"^[A-Za-z0-9_.\-]{1,32}$", description="Start of every key name."
    )
    max_payload_bytes: int = Field(
        default=512 * 1024, ge=1, description="Largest encoded args + kwargs accepted at enqueue."
    )
    result_ttl: float = Field(
        default=86400.0, ge=0, description="Seconds a finished task's record and result are kept; 0 keeps them forever."
    )
    events_maxlen: int = Field(
        default=10_000, ge=0, description="Approximate length the event stream is capped at; 0 disables events."
    )
    lease_timeout: float = Field(
        default=30.0, gt=0, description="Seconds a claim stays valid without a heartbeat before the reaper requeues it."
    )


PoolKind = Literal["asyncio", "thread", "process"]
LoopKind = Literal["auto", "uvloop", "asyncio"]


class WorkerSettings(BaseModel):
    """How one ``orch worker`` process runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    queues: tuple[tuple[str, int], ...] = Field(
        default=(("default", 1),), description="Queues with weights; weight 1 everywhere means strict order."
    )
    concurrency: int = Field(default=10, ge=1, le=10_000, description="Tasks run at once.")
    pool: PoolKind = Field(default="thread", description="Where sync task functions run; async ones run on the loop.")
    loop: LoopKind = Field(default="auto", description="Event loop: uvloop when installed (auto), or asyncio's own.")
    name: str | None = Field(default=None, description="Worker id; default <host>-<pid>.")
    heartbeat_interval: float = Field(default=5.0, gt=0, description="Seconds between heartbeats.")
    grace: float = Field(default=30.0, ge=0, description="Seconds running tasks get to finish on SIGTERM.")
    idle_wait: float = Field(default=1.0, gt=0, description="Longest block on the wake-up key before looking again.")
    apps: tuple[str, ...] = Field(default=(), description="Modules imported at start to register tasks.")
    strict: bool = Field(default=False, description="Refuse to start on an unsafe Redis (eviction, no persistence).")


class SchedulerSettings(BaseModel):
    """How one ``orch scheduler`` (or ``orch reaper``) process runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    queues: tuple[str, ...] = Field(default=(), description="Queues to serve; empty means every known queue.")
    interval: float = Field(default=0.5, gt=0, description="Seconds between passes.")
    batch: int = Field(default=500, ge=1, le=10_000, description="Most tasks one script call moves.")
    promote: bool = Field(default=True, description="Promote due scheduled and retrying tasks.")
    reap: bool = Field(default=True, description="Requeue tasks whose lease expired.")
    strict: bool = Field(default=False, description="Refuse to start on an unsafe Redis (eviction, no persistence).")
