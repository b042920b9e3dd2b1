"""Server and queue health: what ``orch doctor`` prints and what processes check at start.

Owns the checklist (Redis version, persistence, eviction policy, memory, latency,
scripts loaded, live workers counted once over all queues, stuck tasks, queues with
pending tasks that no live worker serves), the container healthchecks (is worker NAME
alive; do promoting and reaping keep up) and a process's first contact with Redis (a
permanent error stops it there). Each check is a pure function of values read from
Redis; ``run_checks`` does the reading. Does not print.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    NoPermissionError,
    RedisError,
    ResponseError,
)

from .errors import ConfigurationError, RedisCommandError, RedisUnavailable
from .keys import DEFAULT_PREFIX, QueueKeys
from .known_queues import known_queues
from .reading import UNREACHABLE, redis_time_ms
from .reading import text as _text
from .sanitize import redis_error_text
from .script_calls import SCRIPT_NAMES, script

LOADING_WAIT = 60.0  # seconds a starting process waits for a Redis that is loading its data
MIN_REDIS = (6, 2, 0)  # ZRANGE ... BYSCORE LIMIT, used by promote and reap
STUCK_AFTER_MS = 10_000  # overdue this long means no scheduler / reaper is running


class Status(str, enum.Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str



def check_version(version: str) -> Check:
    parts = tuple(int(p) for p in version.split(".")[:3] if p.isdigit())
    if parts < MIN_REDIS:
        return Check("version", Status.FAIL, f"Redis {version}; orchestrator needs 6.2 or newer")
    return Check("version", Status.OK, f"Redis {version}")


def check_eviction(policy: str) -> Check:
    if policy != "noeviction":
        return Check(
            "eviction", Status.FAIL,
            f"maxmemory-policy is {policy}: Redis may evict task records; set it to noeviction",
        )
    return Check("eviction", Status.OK, "maxmemory-policy noeviction")


def check_persistence(aof_enabled: bool, save: str, fsync: str) -> Check:
    if aof_enabled:
        status = Status.OK if fsync in ("everysec", "always") else Status.WARN
        return Check("persistence", status, f"appendonly yes, appendfsync {fsync}")
    if save.strip():
        return Check(
            "persistence", Status.WARN,
            f"RDB snapshots only (save {save}): a crash loses the tasks since the last one; use appendonly yes",
        )
    return Check("persistence", Status.WARN, "no persistence: a Redis restart loses every task; use appendonly yes")


def check_memory(used: int, maxmemory: int) -> Check:
    if maxmemory <= 0:
        return Check("memory", Status.OK, f"{used / 2**20:.1f} MiB used, no maxmemory limit")
    share = used / maxmemory
    status = Status.FAIL if share > 0.95 else Status.WARN if share > 0.8 else Status.OK
    return Check("memory", status, f"{used / 2**20:.1f} MiB used of {maxmemory / 2**20:.1f} MiB ({share:.0%})")


def check_latency(ms: float) -> Check:
    status = Status.OK if ms < 5 else Status.WARN
    return Check("latency", status, f"PING round trip {ms:.2f} ms")


def check_scripts(loaded: int, total: int) -> Check:
    # Not an error: scripts load themselves on first use (and again after a restart).
    return Check("scripts", Status.OK, f"{loaded}/{total} scripts cached (the rest load on first use)")


def check_workers(live: int) -> Check:
    """``live``: distinct live workers over every queue (a worker of three queues counts once)."""
    if live == 0:
        return Check("workers", Status.WARN, "no live workers: nothing will run")
    return Check("workers", Status.OK, f"{live} live worker{'' if live == 1 else 's'}")


def check_served(queue: str, pending: int, serving: int) -> Check | None:
    """A WARN when tasks wait in ``queue`` and no live worker serves it; else nothing to say."""
    if pending and not serving:
        return Check(
            f"queue {queue}", Status.WARN,
            f"{pending} pending task(s) and no live worker serves this queue: start `orch worker -q {queue}`",
        )
    return None


def check_stuck(queue: str, overdue_scheduled: int, expired_leases: int) -> Check:
    problems = []
    if overdue_scheduled:
        problems.append(f"{overdue_scheduled} scheduled task(s) overdue by more than {STUCK_AFTER_MS // 1000} s")
    if expired_leases:
        problems.append(f"{expired_leases} running task(s) with a lease expired over {STUCK_AFTER_MS // 1000} s ago")
    if problems:
        return Check(f"queue {queue}", Status.WARN, "; ".join(problems) + ": is `orch scheduler` running?")
    return Check(f"queue {queue}", Status.OK, "nothing stuck")


def server_checks(client: Redis) -> list[Check]:
    """The checks that workers and schedulers run at start (persistence and eviction)."""
    info = client.info()
    config = client.config_get("maxmemory-policy")
    save = client.config_get("save").get("save", "")
    fsync = client.config_get("appendfsync").get("appendfsync", "")
    return [
        check_version(_text(info.get("redis_version", "0"))),
        check_eviction(_text(config.get("maxmemory-policy", ""))),
        check_persistence(bool(int(info.get("aof_enabled", 0))), _text(save), _text(fsync)),
    ]


def first_contact(client: Redis, *, tag: str, log: Any, loading_wait: float = LOADING_WAIT) -> None:
    """Reach Redis once before a worker or scheduler starts; permanent errors stop it here.

    Raises RedisUnavailable when Redis cannot be reached (refused, unknown host, timeout)
    and RedisCommandError when it refuses us (wrong password, database index out of range).
    Retrying belongs to outages of a server that was reachable: once running, a process
    rides them out. A server still loading its data, or busy running a long script (BUSY,
    for every client until it ends), is waited for, up to ``loading_wait``.
    """
    deadline = time.monotonic() + loading_wait
    while True:
        try:
            client.ping()
            return
        except NoPermissionError:
            return  # connected and authenticated; this user just may not PING
        except BusyLoadingError as exc:
            if time.monotonic() > deadline:
                raise RedisUnavailable(f"Redis is still loading its data after {loading_wait:g} s: {exc}") from exc
            log.warning("%s Redis is loading its data; waiting", tag)
            time.sleep(1.0)
        except AuthenticationError as exc:
            raise RedisCommandError(f"{exc} (not starting: check the user and password)") from exc
        except UNREACHABLE as exc:
            raise RedisUnavailable(f"{exc} (not starting: check the URL and that Redis runs)") from exc
        except ResponseError as exc:
            if not str(exc).startswith("BUSY"):
                raise RedisCommandError(f"{redis_error_text(exc)} (not starting)") from exc
            if time.monotonic() > deadline:
                raise RedisUnavailable(f"Redis is still busy running a script after {loading_wait:g} s") from exc
            log.warning("%s Redis is busy running a script (BUSY); waiting", tag)
            time.sleep(0.1)


def startup_checks(client: Redis, *, strict: bool, tag: str, log: Any) -> None:
    """Warn loudly about an unsafe server; with ``strict``, refuse to start instead.

    Runs after ``first_contact``: Redis answered once, so an error here is passing.
    A Redis user without INFO / CONFIG GET (see the README's ACL recipe) cannot check: it
    warns, and ``strict`` refuses, since nothing could be verified.
    """
    try:
        checks = server_checks(client)
    except NoPermissionError as exc:
        detail = f"this Redis user may not run INFO / CONFIG GET ({exc}); run `orch doctor` as an administrator"
        if strict:
            raise ConfigurationError(f"cannot check the Redis server: {detail}; not starting (--strict)") from None
        log.warning("%s Cannot check the Redis server: %s", tag, detail)
        return
    except RedisError as exc:
        log.warning("%s Cannot check the Redis server yet (%s); going on", tag, exc)
        return
    bad = [c for c in checks if c.status is not Status.OK]
    for check in bad:
        log.warning("%s WARNING %s: %s", tag, check.name, check.detail)
    if strict and bad:
        raise ConfigurationError(f"unsafe Redis server ({'; '.join(c.detail for c in bad)}); not starting (--strict)")


def run_checks(client: Redis, prefix: str = DEFAULT_PREFIX) -> list[Check]:
    """Every check of ``orch doctor``."""
    checks = server_checks(client)
    info = client.info("memory")
    checks.append(check_memory(int(info.get("used_memory", 0)), int(info.get("maxmemory", 0))))
    start = time.perf_counter()
    client.ping()
    checks.append(check_latency((time.perf_counter() - start) * 1000))
    names = list(SCRIPT_NAMES)
    loaded = client.script_exists(*(script(n).sha for n in names))
    checks.append(check_scripts(sum(bool(x) for x in loaded), len(names)))
    now_ms = redis_time_ms(client)
    live: set[str] = set()
    unserved = []
    for queue in _known_queues(client, prefix):
        keys = QueueKeys(queue, prefix)
        serving = live_workers(client, keys, now_ms)
        live |= serving
        check = check_served(queue, int(client.zcard(keys.pending)), len(serving))
        unserved += [check] if check is not None else []
    return [*checks, check_workers(len(live)), *scheduler_checks(client, prefix), *unserved]


def _known_queues(client: Redis, prefix: str) -> list[str]:
    return known_queues(client, prefix).names  # bad entries skipped: integrity.integrity_checks names them


def live_workers(client: Redis, keys: QueueKeys, now_ms: int) -> set[str]:
    """Ids of the workers whose registration in the queue has not expired."""
    return {_text(w) for w in client.zrangebyscore(keys.workers, now_ms, "+inf")}


def worker_queues(client: Redis, prefix: str, name: str, queues: Iterable[str] = ()) -> list[str]:
    """The queues in which worker ``name`` is live (its registration not expired), looked
    for in ``queues`` and every known queue: empty when it is not alive (``orch doctor
    --worker``, a container healthcheck)."""
    now_ms = redis_time_ms(client)
    names = sorted({*queues, *_known_queues(client, prefix)})
    return [q for q in names if (client.zscore(QueueKeys(q, prefix).workers, name) or 0) >= now_ms]


def scheduler_checks(client: Redis, prefix: str) -> list[Check]:
    """Whether promoting and reaping keep up (nothing overdue by STUCK_AFTER_MS) in every
    known queue: what a running scheduler guarantees (``orch doctor --scheduler``)."""
    now_ms = redis_time_ms(client)
    checks = []
    for queue in _known_queues(client, prefix):
        keys = QueueKeys(queue, prefix)
        waiting = (keys.scheduled, keys.retrying)
        overdue = sum(int(client.zcount(index, "-inf", now_ms - STUCK_AFTER_MS)) for index in waiting)
        expired = int(client.zcount(keys.running, "-inf", now_ms - STUCK_AFTER_MS))
        checks.append(check_stuck(queue, overdue, expired))
    return checks

