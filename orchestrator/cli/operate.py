"""The ``orch`` commands an operator uses on queues and tasks: ``status``, ``tasks``,
``inspect``, ``events``, ``retry``, ``cancel``, ``run-now``, ``delete``, ``purge``, ``pause``
and ``resume``.

Owns their options and printing. Each is a call of the operator API (``Orchestrator``,
``Queue``) whose records ``views`` turns into lines, or dumps as JSON (``--json``: the
records' own ``model_dump(mode="json")``); no keys, no script calls here. Registered on
the ``orch`` group of ``commands`` when ``orchestrator.cli`` is imported.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import click

from ..models import TaskState
from ..queues import MAX_PAGE, PURGEABLE
from ..records import Event
from . import views as show
from .commands import CliError, CliState, _print_json, orch
from .options import optional_queue, queue_name, queue_names, queue_option

FOLLOW_BLOCK_MS = 5000
STATES = [*(s.value.lower() for s in TaskState), "done"]


@orch.command()
@queue_option("Queue to show (repeatable).  [default: all known]", "queues", multiple=True, callback=queue_names)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@click.pass_obj
def status(state: CliState, /, queues: Sequence[str], as_json: bool) -> None:
    """Counts, paused or not, totals, average run time and live workers of each queue,
    then the next fire time of each of their periodic schedules.

    Counts are the tasks in each state now (success and cancelled ones until their
    retention ends). A paused queue (orch pause) is not claimed from. Totals are counters
    since the queue was first used: succeeded + failed are finished attempts. Average
    run time is runtime_ms / runs over every finished attempt. Throughput over a recent
    window is not stored. A worker is live while its heartbeat deadline is ahead. A
    queue named with -q that was never used is an error.
    """
    app = state.app()
    statuses = app.stats(queues or None)
    if as_json:
        _print_json({"queues": {s.queue: s.model_dump(mode="json") for s in statuses}})
        return
    for line in show.status_lines(statuses):
        click.echo(line)
    shown = {s.queue for s in statuses}
    for schedule in app.schedules():  # their next fire times (orch schedules list tells more)
        if schedule.spec.queue in shown:
            when = "paused" if schedule.paused else f"next {show.iso(schedule.next_ms)}"
            click.echo(f"schedule {schedule.id} -> {schedule.spec.queue}: {when}")


@orch.command()
@queue_option("Queue to list.", required=True, callback=queue_name)
@click.option("--state", "which", type=click.Choice(STATES), default="pending", show_default=True,
              help="Tasks in this state (done = success and cancelled).")
@click.option("--name", help="Only tasks of this name.")
@click.option("--limit", type=click.IntRange(1, MAX_PAGE), default=50, show_default=True, help="Tasks per page.")
@click.option("--cursor", help="Go on from the cursor the previous page printed.")
@click.option("--json", "as_json", is_flag=True, help="Print the page as one JSON object.")
@click.pass_obj
def tasks(
    state: CliState, /, queue: str, which: str, name: str | None, limit: int, cursor: str | None, as_json: bool
) -> None:
    """List a page of a queue's tasks in one state, in index order, one line each.

    Pending tasks in claim order, scheduled and retrying ones by due time, running ones by
    lease deadline, failed and done ones by when they ended. The last line gives the
    cursor of the next page, if there is one.
    """
    page = state.app().queue(queue, must_exist=True).tasks(which, limit=limit, cursor=cursor, name=name)
    if as_json:
        _print_json(page.model_dump(mode="json"))
        return
    for line in show.page_lines(page):
        click.echo(line)


@orch.command(name="inspect")
@click.argument("task_id")
@queue_option("The task's queue.  [default: search every known queue]", callback=optional_queue)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@click.pass_obj
def inspect_task(state: CliState, /, task_id: str, queue: str | None, as_json: bool) -> None:
    """Show the whole record of task TASK_ID, times in ISO 8601 UTC."""
    record = show.task_record(state.app().task_info(task_id, queue))
    if as_json:
        _print_json(record)
        return
    for line in show.task_lines(record):
        click.echo(line)


@orch.command()
@queue_option("Queue to read (repeatable).  [default: all known]", "queues", multiple=True, callback=queue_names)
@click.option("-n", "--count", type=click.IntRange(min=0), default=20, show_default=True, help="Latest events to show.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events until interrupted.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per event.")
@click.pass_obj
def events(state: CliState, /, queues: Sequence[str], count: int, follow: bool, as_json: bool) -> None:
    """Print recent events, one line each: time, queue, event, task, other fields.

    Every known queue by default, merged in time order; a queue named with -q that was
    never used is an error.
    """
    app = state.app()
    chosen = list(queues) or None

    def emit(batch: list[Event]) -> None:
        for event in batch:
            line = json.dumps(event.model_dump(mode="json")) if as_json else None
            click.echo(line or show.event_line(event))

    recent = app.events(chosen, count)
    emit(recent)
    if not follow:
        return
    try:
        for batch in app.follow(chosen, after=recent, block_ms=FOLLOW_BLOCK_MS):
            emit(batch)
    except KeyboardInterrupt:
        return


@orch.command()
@click.argument("task_ids", nargs=-1)
@queue_option("The tasks' queue.  [default: search every known queue]", callback=optional_queue)
@click.option("--all-failed", is_flag=True, help="Retry every FAILED task of the queue (needs -q).")
@click.option("--dry-run", is_flag=True, help="With --all-failed: only print how many would be retried.")
@click.pass_obj
def retry(state: CliState, /, task_ids: Sequence[str], queue: str | None, all_failed: bool, dry_run: bool) -> None:
    """Move FAILED tasks (TASK_IDS, or --all-failed -q QUEUE) back to PENDING, attempts reset."""
    if all_failed == bool(task_ids):
        raise CliError("give task ids or --all-failed -q QUEUE (one of the two)")
    app = state.app()
    if all_failed:
        if queue is None:
            raise CliError("--all-failed needs -q QUEUE")
        moved = app.queue(queue).retry_failed(dry_run=dry_run)
        click.echo(f"{'would requeue' if dry_run else 'requeued'} {moved} failed tasks of queue {queue}")
        return
    if dry_run:
        raise CliError("--dry-run goes with --all-failed")
    for task_id in task_ids:
        app.retry(task_id, queue)
        click.echo(f"requeued {task_id}")


@orch.command()
@click.argument("task_id")
@queue_option("The task's queue.  [default: search every known queue]", callback=optional_queue)
@click.pass_obj
def cancel(state: CliState, /, task_id: str, queue: str | None) -> None:
    """Cancel task TASK_ID: at once unless it is running, when its worker stops it."""
    after = state.app().cancel(task_id, queue)
    click.echo("CANCELLED" if after is TaskState.CANCELLED else f"cancel requested ({after.value.lower()})")


@orch.command(name="run-now")
@click.argument("task_id")
@queue_option("The task's queue.  [default: search every known queue]", callback=optional_queue)
@click.pass_obj
def run_now(state: CliState, /, task_id: str, queue: str | None) -> None:
    """Run task TASK_ID now: a scheduled or retrying task becomes pending at once."""
    was = state.app().run_now(task_id, queue)
    click.echo(f"pending now (was {was.value.lower()})")


@orch.command()
@click.argument("task_id")
@queue_option("The task's queue.  [default: search every known queue]", callback=optional_queue)
@click.option("--yes", is_flag=True, help="Confirm: the task and its record are deleted for good.")
@click.pass_obj
def delete(state: CliState, /, task_id: str, queue: str | None, yes: bool) -> None:
    """Delete task TASK_ID (any state but running) with its record and idempotency keys."""
    if not yes:
        raise CliError(f"delete removes task {task_id} and its record for good: add --yes to confirm")
    was = state.app().delete(task_id, queue)
    click.echo(f"deleted {task_id}" + (f" ({was.value.lower()})" if was is not None else ""))


@orch.command()
@queue_option("Queue to purge.", required=True, callback=queue_name)
@click.option(
    "--state", "which", type=click.Choice([*PURGEABLE, "all"]), default="failed", show_default=True,
    help="Which tasks to delete; done = success and cancelled; all = every state but running "
    "(running tasks are never purged).",
)
@click.option("--dry-run", is_flag=True, help="Only print how many tasks would be deleted.")
@click.option("--yes", is_flag=True, help="Confirm: the tasks and their records are deleted for good.")
@click.pass_obj
def purge(state: CliState, /, queue: str, which: str, dry_run: bool, yes: bool) -> None:
    """Delete a queue's tasks in one state, with their records."""
    if not (yes or dry_run):
        raise CliError(f"purge deletes {which} tasks of queue {queue} for good: add --yes to confirm")
    target = state.app().queue(queue)
    order = ("failed", "done", "pending", "scheduled", "retrying")
    removed = {index: target.purge(index, dry_run=dry_run) for index in (order if which == "all" else (which,))}
    detail = ", ".join(f"{n} {index}" for index, n in removed.items())
    verb = "would purge" if dry_run else "purged"
    click.echo(f"{verb} {sum(removed.values())} tasks of queue {queue} ({detail})")


@orch.command()
@click.argument("queue", callback=queue_name)
@click.pass_obj
def pause(state: CliState, /, queue: str) -> None:
    """Pause QUEUE: no worker claims from it until `orch resume`; enqueue goes on, running tasks finish."""
    changed = state.app().queue(queue, must_exist=True).pause()
    click.echo(f"paused queue {queue}" if changed else f"queue {queue} was paused already")


@orch.command()
@click.argument("queue", callback=queue_name)
@click.pass_obj
def resume(state: CliState, /, queue: str) -> None:
    """Resume QUEUE after `orch pause`: workers claim from it again at once."""
    changed = state.app().queue(queue, must_exist=True).resume()
    click.echo(f"resumed queue {queue}" if changed else f"queue {queue} was not paused")
