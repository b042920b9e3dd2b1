"""The chaos soak's evidence: what it read back, and the per-task story assembled from it.

Owns ``Collected`` (the producers' request files, every task record, the runs the task
functions logged, the queues' event streams, the indexes after the drain, the faults done
and when), saving and loading it as one JSON file, and assembling it: runs from log
entries (``assemble_runs``), each task's claims and lease ends from its events
(``timeline``), the claim a run executed under (``claim_of``). Pure: no I/O besides
``save`` / ``load``, and no verdicts (``soak_check``).

Every time here is Redis's clock: runs log Redis TIME in microseconds; events carry the
millisecond of their stream id (the same clock, whole milliseconds, hence TOLERANCE_US).

Words: a *claim* is a ``claimed`` event (task, attempt, worker); it opens a lease that
stays valid until the first later event of the task that ends it (``LEASE_ENDS``): the
holder's outcome (succeeded, retrying, failed, cancelled), the reaper taking it back after
its deadline passed (reaped), or a graceful release (released). A *run* is one execution
of the task function under a claim, as logged by ``soak_tasks``: its token, attempt and
worker, its start, and its end (end, raise or cancel; none when its process was killed).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

FINAL = ("SUCCESS", "FAILED", "CANCELLED")
LEASE_ENDS = frozenset({"succeeded", "retrying", "failed", "cancelled", "reaped", "released"})
RUN_ENDS = frozenset({"end", "raise", "cancel"})
TOLERANCE_US = 2_000  # event times are whole milliseconds; allow one either side


# ------------------------------------------------------------------------- evidence


@dataclass(frozen=True)
class Event:
    """One entry of a queue's event stream."""

    queue: str
    ms: int
    seq: int
    fields: Mapping[str, str]

    @property
    def kind(self) -> str:
        return self.fields.get("event", "")

    @property
    def task(self) -> str | None:
        return self.fields.get("task")

    @property
    def us(self) -> int:
        return self.ms * 1000

    @classmethod
    def parse(cls, queue: str, stream_id: str, fields: Mapping[str, str]) -> Event:
        ms, seq = stream_id.split("-")
        return cls(queue, int(ms), int(seq), dict(fields))


@dataclass
class Run:
    """One execution of a task function, assembled from its log entries."""

    task: str
    token: str
    attempt: int | None
    worker: str
    via: str
    pid: int
    start_us: int | None = None
    end_us: int | None = None
    end_kind: str | None = None
    starts: int = 0  # more than one: the same lease ran the function twice

    def describe(self) -> str:
        end = f"{self.end_kind} {self.end_us}" if self.end_us is not None else "no end"
        where = f"{self.worker} (pid {self.pid})"
        return f"token {self.token} attempt {self.attempt} on {where}: start {self.start_us}, {end}"


@dataclass
class Collected:
    """Everything the soak read back after the drain."""

    requests: list[dict[str, Any]]  # the producers' lines: a Planned plus ack, id, created (or error)
    records: dict[str, dict[str, str]]  # task id -> its hash
    entries: list[dict[str, Any]]  # soak:attempts, parsed
    events: list[Event]
    indexes: dict[str, dict[str, dict[str, float]]]  # queue -> pending/scheduled/running/failed/done -> id: score
    now_ms: int
    events_read: dict[str, int] = field(default_factory=dict)  # queue -> events the tailer saw
    events_added: dict[str, int] = field(default_factory=dict)  # queue -> XINFO STREAM entries-added
    unexpected_exits: list[str] = field(default_factory=list)
    drained: bool = True
    drain_timeout: float = 0.0
    faults: list[dict[str, Any]] = field(default_factory=list)  # kind, target, ms: what the soak did, when
    stale: list[str] = field(default_factory=list)  # expired leases left in running, seen while it ran
    lease_ms: int = 0


def save(data: Collected, path: Path) -> None:
    """Write the evidence to one JSON file, for ``load`` (re-checking a run offline)."""
    doc = {**asdict(data), "events": [[e.queue, f"{e.ms}-{e.seq}", dict(e.fields)] for e in data.events]}
    path.write_bytes(orjson.dumps(doc))


def load(path: Path) -> Collected:
    doc = orjson.loads(path.read_bytes())
    doc["events"] = [Event.parse(queue, stream_id, fields) for queue, stream_id, fields in doc["events"]]
    return Collected(**doc)


# ----------------------------------------------------------------------- assembling


def assemble_runs(entries: Iterable[dict[str, Any]]) -> tuple[dict[tuple[str, str], Run], int]:
    """Runs by (task, token), and the number of runs that could not tell their lease.

    A process-pool child that found no lease of its own (it was reaped before the child
    started) logs token None: such a run cannot have committed anything, and is only counted.
    An entry resent by the client after a lost reply has the nonce of the first: kept once.
    """
    runs: dict[tuple[str, str], Run] = {}
    unknown = 0
    seen: set[str] = set()
    for e in sorted(entries, key=lambda e: e["t"]):
        if e.get("nonce") in seen:
            continue
        seen.add(e.get("nonce", ""))
        if e.get("task") is None or e.get("token") is None:
            unknown += e.get("event") == "start"
            continue
        key = (e["task"], e["token"])
        run = runs.get(key)
        if run is None:
            run = runs[key] = Run(e["task"], e["token"], e.get("attempt"), e.get("worker", "?"), e.get("via", "?"),
                                  e.get("pid", 0))
        if e["event"] == "start":
            run.starts += 1
            run.start_us = e["t"] if run.start_us is None else min(run.start_us, e["t"])
        elif e["event"] in RUN_ENDS and run.end_us is None:
            run.end_us, run.end_kind = e["t"], e["event"]
    return runs, unknown


@dataclass
class Claim:
    event: Event
    attempt: int
    worker: str
    end: Event | None = None  # the event that ended its lease; None while it is out

    @property
    def lease_end_us(self) -> float:
        return self.end.us if self.end is not None else math.inf

    def describe(self) -> str:
        ended = f"{self.end.kind} at {self.end.ms}" if self.end else "never ended"
        return f"claim of attempt {self.attempt} by {self.worker} at {self.event.ms} ({ended})"


@dataclass
class Timeline:
    """One task's claims and lease ends, in stream order, with what did not alternate."""

    claims: list[Claim] = field(default_factory=list)
    finals: list[Event] = field(default_factory=list)
    released: int = 0
    anomalies: list[str] = field(default_factory=list)


def timeline(events: Iterable[Event]) -> Timeline:
    """Walk one task's events: every claim must come while no lease is out, every lease end
    must end the lease that is out. That is "never two valid leases at once", as Redis saw it."""
    out = Timeline()
    current: Claim | None = None
    for e in sorted(events, key=lambda e: (e.ms, e.seq)):
        kind = e.kind
        if kind == "claimed":
            if current is not None:
                out.anomalies.append(f"claimed (attempt {e.fields.get('attempt')}) at {e.ms} while the "
                                     f"{current.describe()} was still out")
            current = Claim(e, int(e.fields.get("attempt", 0)), e.fields.get("worker", "?"))
            out.claims.append(current)
        elif kind in LEASE_ENDS:
            if current is None and kind != "cancelled":  # cancelled may end a waiting task
                out.anomalies.append(f"{kind} at {e.ms} with no lease out")
            if current is not None:
                current.end = e
                current = None
            out.released += kind == "released"
        if kind in ("succeeded", "failed", "cancelled") or (kind == "reaped" and e.fields.get("state") != "RETRYING"):
            out.finals.append(e)
    return out


def claim_of(run: Run, claims: list[Claim]) -> Claim | None:
    """The claim a run executed under: same attempt and worker, the latest before it started."""
    found = None
    for claim in claims:
        same = claim.attempt == run.attempt and claim.worker == run.worker
        if same and (run.start_us is None or claim.event.us <= run.start_us + TOLERANCE_US):
            found = claim
    return found


def parse_json(raw: str | None) -> Any:
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
