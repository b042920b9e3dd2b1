"""The story ``orch demo`` tells: its seeded plan, and the telling from the event stream.

Owns what the demo enqueues and when (a seeded mix of ``demo_tasks``, in waves), turning
stream entries (as XREAD returns them) into short numbered lines in the spirit of the
asyncio simulation this project grew from (``[Worker w-2] Claimed task 12 (priority 1)``),
the tallies the metrics line and the summary (``summary``) need.
Pure: no I/O and no printing. ``run`` reads Redis, runs the processes and prints.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ..models import FINAL_STATES, TaskState
from ..reading import text
from . import tasks as demo_tasks

FINAL = frozenset(state.value for state in FINAL_STATES)


# ---------------------------------------------------------------------------- plan

FIRST_WAVE = 0.4  # share of the tasks enqueued at once: a backlog, so priorities show
WAVE_SHARE = 0.1  # share of the tasks in each later wave
WAVE_EVERY = 1.0  # seconds between waves
WORK_MS = (50, 800)  # simulated work per task


@dataclass(frozen=True)
class PlannedTask:
    name: str
    args: tuple[int | str, ...]
    priority: int


def plan_tasks(n: int, seed: int) -> list[PlannedTask]:
    """The seeded task mix: mostly ``demo:work``, about 1 in 8 flaky, 1 in 20 doomed."""
    rng = random.Random(seed)
    numbers = list(range(1, n + 1))
    doomed = set(rng.sample(numbers, max(1, n // 20))) if n >= 3 else set()
    flaky = set(rng.sample([i for i in numbers if i not in doomed], max(1, n // 8))) if n >= 3 else set()
    tasks = []
    for i in numbers:
        ms, priority = rng.randint(*WORK_MS), rng.randint(0, 9)
        if i in doomed:
            tasks.append(PlannedTask(demo_tasks.doomed.name, (ms // 3,), priority))
        elif i in flaky:
            tasks.append(PlannedTask(demo_tasks.flaky.name, (str(i), ms), priority))
        else:
            tasks.append(PlannedTask(demo_tasks.work.name, (ms,), priority))
    return tasks


def plan_waves(n: int) -> list[tuple[float, int]]:
    """(seconds from the start, how many tasks): a first backlog, then steady smaller waves."""
    first = min(n, math.ceil(n * FIRST_WAVE))
    size = max(1, math.ceil(n * WAVE_SHARE))
    waves = [(0.0, first)]
    left = n - first
    while left > 0:
        waves.append((len(waves) * WAVE_EVERY, min(size, left)))
        left -= size
    return waves


# -------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Event:
    """One entry of the event stream: its Redis time (from the entry id) and its fields."""

    ms: int
    seq: int
    fields: Mapping[str, str]

    @property
    def kind(self) -> str:
        return self.fields.get("event", "")

    def get(self, name: str) -> str:
        return self.fields.get(name, "")

    def int(self, name: str, default: int = 0) -> int:
        try:
            return int(self.fields.get(name, ""))
        except ValueError:
            return default


def parse_event(entry_id: bytes | str, fields: Mapping[bytes | str, bytes | str]) -> Event:
    """An Event from one XREAD entry (``b"1712345678901-0"``, ``{b"event": b"claimed", ...}``)."""
    ms, _, seq = text(entry_id).partition("-")
    return Event(int(ms), int(seq or 0), {text(k): text(v) for k, v in fields.items()})


def stamp(ms: float, t0_ms: float) -> str:
    """Seconds since the demo started, as the first column of every line."""
    return f"{max(0.0, (ms - t0_ms) / 1000):6.2f}s"


def errortext(raw: str) -> str:
    """``Type: message`` of an error record (JSON with type and message), or the raw text."""
    try:
        record = json.loads(raw)
    except ValueError:
        return raw
    if not isinstance(record, dict):
        return raw
    return f"{record.get('type', 'Error')}: {record.get('message', '')}"


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0-100), None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def span(numbers: Sequence[int]) -> str:
    """``tasks 3-8`` for a run of consecutive numbers, else ``6 tasks``."""
    if len(numbers) == 1:
        return f"task {numbers[0]}"
    if list(numbers) == list(range(numbers[0], numbers[0] + len(numbers))):
        return f"tasks {numbers[0]}-{numbers[-1]}"
    return f"{len(numbers)} tasks"


def plural(n: int, word: str, words: str | None = None) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {words or word + 's'}"


@dataclass
class WorkerTally:
    """What one worker did, as its events tell it, plus the load its heartbeats reported."""

    claimed: int = 0
    succeeded: int = 0
    errors: int = 0  # attempts that raised (then retried or failed)
    reaped: int = 0  # attempts lost with the worker (lease expired)
    loads: list[float] = field(default_factory=list)

    @property
    def avg_load(self) -> float | None:
        return sum(self.loads) / len(self.loads) if self.loads else None


class Story:
    """Follows a queue's events: numbers tasks, keeps tallies, writes one line per event."""

    def __init__(self, t0_ms: float) -> None:
        self.t0_ms = t0_ms
        self.numbers: dict[str, int] = {}  # task id -> 1, 2, ... in enqueue order
        self.states: dict[str, str] = {}  # task id -> last state the events showed
        self.names: dict[str, str] = {}  # task id -> task name
        self.holder: dict[str, str] = {}  # task id -> worker of its latest claim
        self.held: defaultdict[str, set[str]] = defaultdict(set)  # worker -> tasks it runs now
        self.reaped_from: list[tuple[str, str]] = []  # (task id, worker) per expired lease
        self._reaped_unreported: defaultdict[str, int] = defaultdict(int)  # before its worker_lost
        self.lost_workers: list[str] = []
        self.retries = 0
        self.retried: set[str] = set()
        self.runtimes: list[int] = []
        self.workers: defaultdict[str, WorkerTally] = defaultdict(WorkerTally)
        self._handlers: dict[str, Callable[[Event], str | None]] = {
            "claimed": self._claimed,
            "succeeded": self._succeeded,
            "retrying": self._retrying,
            "failed": self._failed,
            "cancelled": self._cancelled,
            "promoted": self._promoted,
            "reaped": self._reaped,
            "worker_lost": self._worker_lost,
            "released": self._released,
        }

    # ------------------------------------------------------------------ tasks

    def add_tasks(self, task_ids: Iterable[str]) -> None:
        """Number tasks in the order they were enqueued."""
        for task_id in task_ids:
            self.numbers.setdefault(task_id, len(self.numbers) + 1)

    def number(self, task_id: str) -> str:
        n = self.numbers.get(task_id)
        return str(n) if n is not None else task_id[:8]

    def count(self, *states: str) -> int:
        return sum(1 for task_id in self.numbers if self.states.get(task_id) in states)

    @property
    def done(self) -> int:
        return self.count(*FINAL)

    # ------------------------------------------------------------------ lines

    def lines(self, events: Sequence[Event]) -> list[str]:
        """Apply ``events`` in order; return their stamped lines (enqueues grouped per call).

        A lost worker is told before the leases reaped with it in the same script call.
        """
        ordered = sorted(events, key=lambda e: (e.ms, e.kind != "worker_lost", e.seq))
        out: list[str] = []
        i = 0
        while i < len(ordered):
            event = ordered[i]
            if event.kind == "enqueued":
                j = i
                while j < len(ordered) and ordered[j].kind == "enqueued":
                    j += 1
                out.append(f"{stamp(event.ms, self.t0_ms)} {self._enqueued(ordered[i:j])}")
                i = j
                continue
            text = self.apply(event)
            if text:
                out.append(f"{stamp(event.ms, self.t0_ms)} {text}")
            i += 1
        return out

    def apply(self, event: Event) -> str | None:
        handler = self._handlers.get(event.kind)
        if handler is not None:
            return handler(event)
        task = event.get("task")
        return f"[Queue] {event.kind} task {self.number(task)}" if task else None

    def _enqueued(self, events: Sequence[Event]) -> str:
        for event in events:
            self.states[event.get("task")] = event.get("state") or TaskState.PENDING.value
            self.names[event.get("task")] = event.get("name")
        numbers = sorted(int(n) for n in (self.number(e.get("task")) for e in events) if n.isdigit())
        priorities = sorted({e.int("priority") for e in events})
        low, high = priorities[0], priorities[-1]
        levels = f"priority {low}" if low == high else f"priorities {low}-{high}"
        kinds = Counter(e.get("name") for e in events)
        mix = ", ".join(f"{n} {name}" for name, n in sorted(kinds.items()))
        what = span(numbers) if len(numbers) == len(events) else plural(len(events), "task")
        return f"[Producer] Enqueued {what} ({levels}: {mix})"

    def _end_attempt(self, e: Event) -> tuple[str, str]:
        """(task, worker) of an attempt that ended: the worker no longer runs the task."""
        task = e.get("task")
        holder = self.holder.get(task, "")
        self.held[holder].discard(task)
        return task, e.get("worker") or holder

    def _claimed(self, e: Event) -> str:
        task, worker, attempt = e.get("task"), e.get("worker"), e.int("attempt", 1)
        self.states[task] = TaskState.RUNNING.value
        self.names[task] = e.get("name")
        self.holder[task] = worker
        self.held[worker].add(task)
        self.workers[worker].claimed += 1
        again = f", attempt {attempt}" if attempt > 1 else ""
        return f"[Worker {worker}] Claimed task {self.number(task)} (priority {e.get('priority')}{again})"

    def _succeeded(self, e: Event) -> str:
        task, worker = self._end_attempt(e)
        self.states[task] = TaskState.SUCCESS.value
        runtime = e.int("runtime_ms")
        self.runtimes.append(runtime)
        self.workers[worker].succeeded += 1
        return f"[Worker {worker}] Task {self.number(task)} succeeded in {runtime} ms"

    def _retrying(self, e: Event) -> str:
        task, worker = self._end_attempt(e)
        self.states[task] = TaskState.RETRYING.value
        self.retries += 1
        self.retried.add(task)
        self.workers[worker].errors += 1
        wait = (e.int("run_at", e.ms) - e.ms) / 1000
        return (
            f"[Worker {worker}] Task {self.number(task)} ({e.get('name')}) failed on attempt "
            f"{e.get('attempt')}: {errortext(e.get('error'))}; retry in {wait:.1f} s"
        )

    def _failed(self, e: Event) -> str:
        task, worker = self._end_attempt(e)
        self.states[task] = TaskState.FAILED.value
        self.workers[worker].errors += 1
        return (
            f"[Worker {worker}] Task {self.number(task)} ({e.get('name')}) FAILED after "
            f"{plural(e.int('attempt'), 'attempt')}: {errortext(e.get('error'))} -> dead-letter"
        )

    def _cancelled(self, e: Event) -> str:
        task, worker = self._end_attempt(e) if e.get("worker") else (e.get("task"), "")
        self.states[task] = TaskState.CANCELLED.value
        return f"[{f'Worker {worker}' if worker else 'Producer'}] Task {self.number(task)} cancelled"

    def _promoted(self, e: Event) -> str:
        task = e.get("task")
        self.states[task] = TaskState.PENDING.value
        why = "for retry" if e.get("from") == TaskState.RETRYING.value else "(its delay is over)"
        return f"[Scheduler] Promoted task {self.number(task)} {why}"

    def _reaped(self, e: Event) -> str:
        task, worker = self._end_attempt(e)
        state = e.get("state")
        self.states[task] = state
        self.reaped_from.append((task, worker))
        self.workers[worker].reaped += 1
        if worker not in self.lost_workers:
            self._reaped_unreported[worker] += 1
        if state == TaskState.RETRYING.value:
            self.retries += 1
            self.retried.add(task)
            return (
                f"[Monitor] Task {self.number(task)} requeued from {worker} for retry "
                f"(lease expired on attempt {e.get('attempt')})"
            )
        return f"[Monitor] Task {self.number(task)} FAILED: lease expired on {worker} with no attempts left"

    def _worker_lost(self, e: Event) -> str:
        worker = e.get("worker")
        self.lost_workers.append(worker)
        requeued = len(self.held[worker]) + self._reaped_unreported.pop(worker, 0)
        last_seen = e.int("last_seen")
        silent = f" (silent {(e.ms - last_seen) / 1000:.1f} s)" if last_seen else ""
        return f"[Monitor] Worker {worker} unresponsive{silent}, requeued {plural(requeued, 'task')}"

    def _released(self, e: Event) -> str:
        task, worker = self._end_attempt(e)
        self.states[task] = TaskState.PENDING.value
        return f"[Worker {worker}] Released task {self.number(task)} back to pending"

    # ---------------------------------------------------------------- metrics

    def metrics(self, total: int, load: float | None) -> str:
        """``[Metrics] 41/60 done · avg load 63% · success 97% · avg run 210 ms``."""
        done = self.done
        parts = [f"{done}/{total} done"]
        parts.append(f"avg load {load:.0%}" if load is not None else "avg load -")
        succeeded = self.count(TaskState.SUCCESS.value)
        parts.append(f"success {succeeded / done:.0%}" if done else "success -")
        if self.runtimes:
            parts.append(f"avg run {sum(self.runtimes) / len(self.runtimes):.0f} ms")
        return "[Metrics] " + " · ".join(parts)

    def progress(self, total: int, elapsed: float) -> str:
        """The one-line live status shown on a terminal."""
        running = sum(len(tasks) for tasks in self.held.values())
        return f"{elapsed:5.1f}s  {self.done}/{total} done, {running} running, {self.retries} retries"
