"""The only place a Redis key string is formed.

Owns the key layout (documented in the README for redis-cli users) and queue-name
validation, which runs before any key is built. Lua scripts never spell a key: fixed
keys arrive in KEYS, per-task keys are built from ``QueueKeys.base`` passed in ARGV.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import InvalidQueueName

DEFAULT_PREFIX = "orch"
_QUEUE_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
SHARD_MARK = "#"  # a shard's physical queue is ``<queue>#<tag>``: '#' is refused in names, so no queue collides
_SHARD_NAME = re.compile(r"([A-Za-z0-9_.\-]{1,64})#([0-9]{1,3}(?:-[0-9]{1,6})?)")


def validate_queue_name(name: object) -> str:
    """Return ``name`` when it is a valid queue name, else raise InvalidQueueName."""
    if not isinstance(name, str) or not _QUEUE_NAME.fullmatch(name):
        raise InvalidQueueName(
            f"invalid queue name {name!r}: use 1-64 letters, digits, '_', '-' or '.'", field="queue"
        )
    return name


def validate_stored_name(name: object) -> str:
    """``name`` when it is a queue name or a shard's physical queue name (``hot#0``, ``hot#1-7``:
    see ``shard_queue``), else InvalidQueueName. Users name queues with ``validate_queue_name``;
    this is for names read back from Redis and the keys of a shard."""
    if isinstance(name, str) and SHARD_MARK in name and _SHARD_NAME.fullmatch(name):
        return name
    return validate_queue_name(name)


def shard_queue(queue: str, index: int, salt: int = 0) -> str:
    """The physical queue of shard ``index`` of ``queue``: ``<queue>#<index>``, or
    ``<queue>#<index>-<salt>`` when a salt moved its hash tag onto another cluster master."""
    return f"{queue}{SHARD_MARK}{index}" + (f"-{salt}" if salt else "")


def logical_queue(name: str) -> str:
    """The queue a physical queue name belongs to: ``hot`` for ``hot#2-5``, the name itself
    for a queue that is not a shard."""
    return name.split(SHARD_MARK, 1)[0]


def shards_key(prefix: str = DEFAULT_PREFIX) -> str:
    """Hash queue name -> its shard layout (JSON: shards, queues), for sharded queues only
    (outside any hash tag, like the queues set; written by ``app.declare_queue``)."""
    return f"{prefix}:shards"


def queues_key(prefix: str = DEFAULT_PREFIX) -> str:
    """The set of known queue names (outside any hash tag)."""
    return f"{prefix}:queues"


def schedule_ids_key(prefix: str = DEFAULT_PREFIX) -> str:
    """Hash schedule id -> its queue (outside any hash tag, like the queues set): ids are
    global to a deployment, so ``orch schedules remove ID`` needs no queue."""
    return f"{prefix}:schedule_ids"


def set_aside(key: str, ms: int) -> str:
    """Where ``orch doctor --repair`` moves ``key`` when it held a type no script writes
    (same hash tag; kept for a person to inspect, never read by orchestrator)."""
    return f"{key}:corrupt:{ms}"


@dataclass(frozen=True)
class QueueKeys:
    """Every key of one queue, all under the hash tag ``{queue}``."""

    queue: str
    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        validate_stored_name(self.queue)

    @property
    def base(self) -> str:
        """Common start of every key of this queue; scripts append ``task:<id>`` etc."""
        return f"{self.prefix}:{{{self.queue}}}:"

    def task(self, task_id: str) -> str:
        return f"{self.base}task:{task_id}"

    def idempotency(self, key: str) -> str:
        """The entry of ``key=``: names its task for as long as the task's record exists."""
        return f"{self.base}key:{key}"

    def unique(self, key: str) -> str:
        """The entry of ``unique_key=``: names its task while the task is unfinished."""
        return f"{self.base}unique:{key}"

    def worker(self, worker_id: str) -> str:
        return f"{self.base}worker:{worker_id}"

    @property
    def pending(self) -> str:
        return f"{self.base}pending"

    @property
    def scheduled(self) -> str:
        return f"{self.base}scheduled"

    @property
    def retrying(self) -> str:
        """RETRYING tasks (score run-at), apart from scheduled so each state's count is one ZCARD."""
        return f"{self.base}retrying"

    @property
    def running(self) -> str:
        return f"{self.base}running"

    @property
    def failed(self) -> str:
        return f"{self.base}failed"

    @property
    def done(self) -> str:
        return f"{self.base}done"

    @property
    def cancelled(self) -> str:
        """CANCELLED tasks by finish time, kept and trimmed like done (which holds SUCCESS only)."""
        return f"{self.base}cancelled"

    @property
    def paused(self) -> str:
        """A string (the time it was paused, ms) that exists while the queue is paused: claim takes nothing."""
        return f"{self.base}paused"

    @property
    def workers(self) -> str:
        return f"{self.base}workers"

    @property
    def stats(self) -> str:
        return f"{self.base}stats"

    @property
    def events(self) -> str:
        return f"{self.base}events"

    @property
    def wake(self) -> str:
        return f"{self.base}wake"

    @property
    def cancels(self) -> str:
        """A pub/sub channel, not a key: cancel.lua publishes the id of a RUNNING task asked to stop."""
        return f"{self.base}cancels"

    def finished(self, task_id: str) -> str:
        """A shard pub/sub channel, not a key: the scripts that end a task (complete, a final
        fail or reap, cancel, delete) SPUBLISH its state there, so ``TaskHandle.result`` wakes
        at once. Scripts build it from the base (``finished:<id>``), like ``task:<id>``."""
        return f"{self.base}finished:{task_id}"

    @property
    def tokens(self) -> str:
        """The lease-token counter: its own key, so a producer's ACL can leave it read-only."""
        return f"{self.base}tokens"

    @property
    def metrics(self) -> str:
        """Counters and histogram buckets (labels inside the field names: metrics_records)."""
        return f"{self.base}metrics"

    @property
    def names(self) -> str:
        """The task names admitted as metric labels (at most metrics_records.MAX_NAMES)."""
        return f"{self.base}names"

    def series(self, minute_ms: int) -> str:
        """One minute's counters (enqueued, succeeded, ...), expiring 25 h after it began.
        Scripts build it from the base (``series:<minute ms>``): the minute is Redis TIME's."""
        return f"{self.base}series:{minute_ms}"

    def rollup(self, quarter_ms: int) -> str:
        """One complete quarter hour's roll-up of the series (sums, mean load), expiring 7 days
        after the quarter ended. rollup.lua builds it from the base (``rollup:<quarter ms>``)."""
        return f"{self.base}rollup:{quarter_ms}"

    def schedule(self, schedule_id: str) -> str:
        """One periodic schedule's record (hash: the spec's fields, last_tick, next_ms, ...).
        Scripts build it from the base (``schedule:<id>``)."""
        return f"{self.base}schedule:{schedule_id}"

    @property
    def schedules(self) -> str:
        """The queue's schedules by next fire time (ms): the scheduler reads the due ones."""
        return f"{self.base}schedules"

    @property
    def rolled(self) -> str:
        """The start (ms) of the last quarter hour rolled up (rollup.lua reads and advances it)."""
        return f"{self.base}rolled"
