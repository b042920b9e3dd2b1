"""The ``orch schedules`` commands: ``list``, ``add``, ``remove``, ``run-now``, ``pause``, ``resume``.

Owns their options and printing; each is a call of the operator API's schedule methods
(``schedule_ops``): no keys, no script calls here. Registered on the ``orch`` group of
``commands`` when ``orchestrator.cli`` is imported.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import json
from typing import Any

import click

from .commands import CliState, _print_json, orch
from .views import iso


@orch.group()
def schedules() -> None:
    """Periodic schedules: list, add, remove, run-now, pause, resume."""


@schedules.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@click.pass_obj
def list_schedules(state: CliState, /, as_json: bool) -> None:
    """Every schedule: id, when it fires, its task and queue, its next fire time (UTC)."""
    found = state.app().schedules()
    if as_json:
        _print_json({"schedules": [s.as_json() for s in found]})
        return
    if not found:
        click.echo("no schedules")
    for s in found:
        when = f"cron {s.spec.cron!r} {s.spec.tz}" if s.spec.cron else f"every {s.spec.every:g} s"
        status = "paused" if s.paused else ("disabled" if not s.spec.enabled else f"next {iso(s.next_ms)}")
        click.echo(
            f"{s.id}  {when}  {s.spec.task} -> {s.spec.queue}  {status}  "
            f"last tick {iso(s.last_tick) or '-'}  fired {s.fired} caught_up {s.caught_up} skipped {s.skipped}"
        )


@schedules.command(name="add")
@click.argument("schedule_id")
@click.argument("task")
@click.option("--cron", help="A cron expression (5 fields), in --tz.")
@click.option("--every", type=float, help="Seconds between ticks (at least 1).")
@click.option("--tz", default="UTC", show_default=True, help="Time zone of --cron.")
@click.option("--args", "args_json", default="[]", help="Positional arguments, a JSON list.")
@click.option("--kwargs", "kwargs_json", default="{}", help="Keyword arguments, a JSON object.")
@click.option("-q", "--queue", default="default", show_default=True, help="The queue its tasks go to.")
@click.option("--priority", type=click.IntRange(0, 9), default=5, show_default=True)
@click.option("--catch-up", type=click.Choice(["skip", "latest", "all"]), default="latest", show_default=True)
@click.option("--max-catch-up", type=int, default=10, show_default=True)
@click.option("--overlap", type=click.Choice(["allow", "skip"]), default="allow", show_default=True)
@click.option("--disabled", is_flag=True, help="Declare it without firing it.")
@click.pass_obj
def add(state: CliState, /, schedule_id: str, task: str, args_json: str, kwargs_json: str, disabled: bool,
        **options: Any) -> None:
    """Declare schedule SCHEDULE_ID firing TASK (an upsert: an unchanged one changes nothing)."""
    try:
        args, kwargs = json.loads(args_json), json.loads(kwargs_json)
    except ValueError as exc:
        raise click.BadParameter(f"--args and --kwargs take JSON: {exc}") from None
    outcome = state.app().schedule(schedule_id, task, args=args, kwargs=kwargs, enabled=not disabled, **options)
    click.echo(f"schedule {schedule_id}: {outcome}")


@schedules.command(name="remove")
@click.argument("schedule_id")
@click.pass_obj
def remove(state: CliState, /, schedule_id: str) -> None:
    """Delete schedule SCHEDULE_ID: it never fires again (its tasks stay)."""
    state.app().remove_schedule(schedule_id)
    click.echo(f"schedule {schedule_id}: removed")


@schedules.command(name="prune")
@click.option("-A", "--app", "apps", multiple=True, required=True, metavar="MODULE",
              help="Module whose @app.periodic declarations are the ones to keep (repeatable).")
@click.option("--dry-run", is_flag=True, help="Only print what would be removed.")
@click.pass_obj
def prune(state: CliState, /, apps: tuple[str, ...], dry_run: bool) -> None:
    """Remove every schedule the --app modules no longer declare (a declaration dropped from
    the code is never deleted silently: this is the explicit step)."""
    from .services import collect_declarations

    app = state.app()
    collect_declarations(app, apps)
    for schedule_id in app.prune_schedules(dry_run=dry_run):
        click.echo(f"schedule {schedule_id}: {'would be removed' if dry_run else 'removed'}")


@schedules.command(name="run-now")
@click.argument("schedule_id")
@click.pass_obj
def run_now(state: CliState, /, schedule_id: str) -> None:
    """Enqueue SCHEDULE_ID's task once now (its ticks go on as planned); prints the task id."""
    click.echo(state.app().run_schedule_now(schedule_id).id)


@schedules.command(name="pause")
@click.argument("schedule_id")
@click.pass_obj
def pause(state: CliState, /, schedule_id: str) -> None:
    """Stop firing SCHEDULE_ID until resumed (a deploy that declares it again does not resume it)."""
    changed = state.app().pause_schedule(schedule_id)
    click.echo(f"schedule {schedule_id}: {'paused' if changed else 'already paused'}")


@schedules.command(name="resume")
@click.argument("schedule_id")
@click.pass_obj
def resume(state: CliState, /, schedule_id: str) -> None:
    """Fire SCHEDULE_ID again from its next tick (the ticks of the pause are not caught up)."""
    changed = state.app().resume_schedule(schedule_id)
    click.echo(f"schedule {schedule_id}: {'resumed' if changed else 'not paused'}")
