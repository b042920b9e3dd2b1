"""The closing summary of ``orch demo``: what was killed, what was recovered, no task lost.

Owns the end-of-run check (every task's record in a final state), the recovery count
of the killed worker's tasks, and the summary table with its per-worker rows, from the
``Story``'s tallies and the final states read from Redis. Pure: no I/O and no printing.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..models import TaskState
from .story import FINAL, Story, percentile, plural, stamp


@dataclass(frozen=True)
class Kill:
    """The worker the demo killed with SIGKILL."""

    worker: str
    pid: int
    at_ms: float
    running: int  # tasks it held, as the events showed at that moment


@dataclass(frozen=True)
class Outcome:
    """What the demo checks at the end, from the task records in Redis."""

    final_states: Mapping[str, str | None]  # task id -> state in Redis (None: record missing)

    @property
    def unfinished(self) -> dict[str, str | None]:
        return {t: s for t, s in self.final_states.items() if s not in FINAL}

    @property
    def ok(self) -> bool:
        return not self.unfinished


def recovery(story: Story, kill: Kill | None, outcome: Outcome) -> tuple[int, int]:
    """(tasks requeued from the killed worker, how many of them reached a final state)."""
    if kill is None:
        return 0, 0
    requeued = {task for task, worker in story.reaped_from if worker == kill.worker}
    finished = sum(1 for task in requeued if outcome.final_states.get(task) in FINAL)
    return len(requeued), finished


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def summary_lines(
    story: Story,
    outcome: Outcome,
    workers: Sequence[str],
    kill: Kill | None,
    *,
    planned: int,
    seed: int,
    elapsed: float,
) -> list[str]:
    """The closing table: totals, recovery, run times, the no-task-lost check, per-worker rows."""
    states = Counter(s or "missing" for s in outcome.final_states.values())
    total = len(outcome.final_states)
    enqueued = f"{total} enqueued" if total == planned else f"{total} of {planned} enqueued (time cap)"
    failed_names = Counter(
        story.names.get(task, "?") for task, state in outcome.final_states.items() if state == TaskState.FAILED.value
    )
    rows = [
        ("tasks", enqueued),
        ("succeeded", str(states["SUCCESS"])),
        ("failed", f"{states['FAILED']}" + (f"  (dead-letter: {_mix(failed_names)})" if failed_names else "")),
        ("cancelled", str(states["CANCELLED"])),
        ("retried", f"{len(story.retried)} tasks, {plural(story.retries, 'retry', 'retries')}"),
        ("killed worker", _killed_text(kill, story)),
        ("recovered", _recovered_text(story, kill, outcome)),
        ("run time", f"p50 {_ms(percentile(story.runtimes, 50))} · p95 {_ms(percentile(story.runtimes, 95))}"
                     " (successful attempts)"),
        ("no task lost", _lost_text(story, outcome)),
    ]
    width = max(len(label) for label, _ in rows)
    lines = [f"Summary (seed {seed}, {elapsed:.1f} s)"]
    lines += [f"  {label:<{width}}  {value}" for label, value in rows]
    lines.append("")
    lines += worker_table(story, workers, kill)
    return lines


def _mix(counts: Counter[str]) -> str:
    return ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))


def _killed_text(kill: Kill | None, story: Story) -> str:
    if kill is None:
        return "none"
    return (
        f"{kill.worker} (pid {kill.pid}) by SIGKILL at {stamp(kill.at_ms, story.t0_ms).strip()},"
        f" running {plural(kill.running, 'task')}"
    )


def _recovered_text(story: Story, kill: Kill | None, outcome: Outcome) -> str:
    if kill is None:
        return "-"
    requeued, finished = recovery(story, kill, outcome)
    if requeued == 0 and kill.running == 0:
        return f"nothing to recover: {kill.worker} had just finished its tasks"
    text = f"{finished} of {requeued} tasks requeued from {kill.worker} reached a final state on other workers"
    if requeued < kill.running:
        text += f"; {kill.running - requeued} leases had not expired yet when the demo stopped"
    return text


def _lost_text(story: Story, outcome: Outcome) -> str:
    if outcome.ok:
        return f"OK: all {len(outcome.final_states)} tasks are SUCCESS, FAILED or CANCELLED"
    shown = ", ".join(
        f"task {story.number(task)} {state or 'missing'}" for task, state in list(outcome.unfinished.items())[:8]
    )
    missing = sum(1 for state in outcome.unfinished.values() if state is None)
    return (
        f"NOT OK: {len(outcome.unfinished)} tasks not in a final state, {missing} of them missing ({shown})"
    )


def worker_table(story: Story, workers: Sequence[str], kill: Kill | None) -> list[str]:
    header = f"  {'worker':<8} {'claimed':>7} {'succeeded':>9} {'errors':>6} {'reaped':>6} {'avg load':>8}"
    lines = [header]
    for name in workers:
        tally = story.workers[name]
        load = tally.avg_load
        note = "  killed" if kill is not None and kill.worker == name else ""
        lines.append(
            f"  {name:<8} {tally.claimed:>7} {tally.succeeded:>9} {tally.errors:>6} {tally.reaped:>6}"
            f" {'-' if load is None else f'{load:.0%}':>8}{note}"
        )
    return lines
