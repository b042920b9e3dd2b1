"""The ``orch`` commands that run the services and check on them: ``worker``,
``scheduler``, ``reaper`` and ``doctor`` (with the container healthchecks
``doctor --worker NAME`` and ``doctor --scheduler``).

Owns turning their options into settings (checked before anything starts: a heartbeat
interval above a third of the lease is refused here too) and printing the checks. Does
not run anything itself: ``worker``, ``scheduler`` and ``health`` do. Registered on the
``orch`` group of ``commands`` when ``orchestrator.cli`` is imported.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, get_args

import click

from .. import integrity
from ..client import DEFAULT_QUEUE, Orchestrator
from ..config import LoopKind, PoolKind, SchedulerSettings, Settings, WorkerSettings
from ..health import Check, Status, run_checks, scheduler_checks, worker_queues
from .commands import EXIT_PROBLEM, CliError, CliState, _load, _print_json, orch
from .options import (
    F,
    configure_logging,
    given,
    logging_options,
    queue_names,
    queue_option,
    setting,
    weighted_queues,
)


@orch.command()
@click.option(
    "-A", "--app", "apps", multiple=True, envvar="ORCH_APP", show_envvar=True, metavar="MODULE",
    help="Module to import to register tasks (repeatable).",
)
@setting(WorkerSettings, "queues", "-q", "--queue", "queues", envvar="ORCH_QUEUES", multiple=True,
          callback=weighted_queues, metavar="NAME[:WEIGHT]")
@setting(WorkerSettings, "concurrency", "-c", "--concurrency", envvar="ORCH_CONCURRENCY", type=int)
@setting(WorkerSettings, "pool", "--pool", envvar="ORCH_POOL", type=click.Choice(get_args(PoolKind)))
@setting(WorkerSettings, "loop", "--loop", envvar="ORCH_LOOP", type=click.Choice(get_args(LoopKind)))
@setting(WorkerSettings, "name", "-n", "--name", envvar="ORCH_WORKER_NAME")
@setting(WorkerSettings, "heartbeat_interval", "--heartbeat-interval", envvar="ORCH_HEARTBEAT_INTERVAL", type=float)
@setting(WorkerSettings, "grace", "--grace", envvar="ORCH_GRACE", type=float)
@setting(WorkerSettings, "idle_wait", "--idle-wait", envvar="ORCH_IDLE_WAIT", type=float)
@setting(Settings, "lease_timeout", "--lease-timeout", envvar="ORCH_LEASE_TIMEOUT", type=float)
@setting(WorkerSettings, "strict", "--strict", envvar="ORCH_STRICT", is_flag=True, default=None)
@logging_options
@click.pass_obj
def worker(state: CliState, /, lease_timeout: float | None, verbose: bool, log_level: str, **options: Any) -> None:
    """Run a worker: claim tasks of the queues and run them until SIGTERM or SIGINT.

    With several queues (-q high -q default) and no weights (or equal ones), queues are
    served in strict order: each claim fills the free slots from the first queue, then the
    next, so a later queue gets a slot only when the earlier ones have no pending task
    left; a busy first queue holds the others back for as long as it has work. Weights
    that differ (-q high:3 -q default:1) share instead: each claim visits the queues in a
    random order drawn by weight.
    """
    settings = WorkerSettings(**given(**options))
    app = state.app(**given(lease_timeout=lease_timeout))
    settings.heartbeat_for(app.settings.lease_timeout)  # refused here, before anything starts
    configure_logging(verbose, log_level)
    click.get_current_context().exit(_load("orchestrator.worker", "run_worker")(app, settings))


def _scheduler_options(fn: F) -> F:
    fn = logging_options(fn)
    for option in reversed((
        setting(SchedulerSettings, "queues", "-q", "--queue", "queues", envvar="ORCH_SCHEDULER_QUEUES",
                 multiple=True, callback=queue_names, metavar="NAME"),
        setting(SchedulerSettings, "interval", "--interval", envvar="ORCH_SCHEDULER_INTERVAL", type=float),
        setting(SchedulerSettings, "batch", "--batch", envvar="ORCH_SCHEDULER_BATCH", type=int),
        setting(SchedulerSettings, "strict", "--strict", envvar="ORCH_STRICT", is_flag=True, default=None),
    )):
        fn = option(fn)
    return fn


def _run_scheduler(state: CliState, verbose: bool, log_level: str, **options: Any) -> None:
    settings = SchedulerSettings(**given(**options))
    app = state.app()
    configure_logging(verbose, log_level)
    click.get_current_context().exit(_load("orchestrator.scheduler", "run_scheduler")(app, settings))


@orch.command()
@click.option(
    "-A", "--app", "apps", multiple=True, envvar="ORCH_APP", show_envvar=True, metavar="MODULE",
    help="Module to import at start: its @app.periodic schedules are declared (repeatable).",
)
@_scheduler_options
@click.pass_obj
def scheduler(state: CliState, /, apps: tuple[str, ...], **options: Any) -> None:
    """Run a scheduler: promote due scheduled and retrying tasks, fire due periodic
    schedules, and reap expired leases. With --app, first declare (upsert) the modules'
    @app.periodic schedules: an unchanged one changes nothing."""
    if apps:
        _declare_schedules(state.app(), apps)
    _run_scheduler(state, **options)


def _declare_schedules(app: Orchestrator, apps: tuple[str, ...]) -> None:
    """Import the modules and upsert every @app.periodic declaration of their Orchestrators."""
    collect_declarations(app, apps)
    if not app.declared_schedules:
        click.echo(f"[Scheduler] --app {' '.join(apps)} declares no @app.periodic schedule", err=True)
    for schedule_id, outcome in app.sync_schedules().items():
        click.echo(f"[Scheduler] Schedule {schedule_id}: {outcome}", err=True)


def collect_declarations(app: Orchestrator, apps: tuple[str, ...]) -> None:
    """Import the modules; their Orchestrators' @app.periodic declarations join ``app``'s."""
    import sys

    _load("orchestrator.worker.registry", "load_tasks")(apps)  # imports them (a bad module: one clear error)
    for name in apps:
        for value in vars(sys.modules[name]).values():
            if isinstance(value, Orchestrator) and value is not app:
                app.declared_schedules.update(value.declared_schedules)


@orch.command()
@_scheduler_options
@click.pass_obj
def reaper(state: CliState, /, **options: Any) -> None:
    """Run only the reaper: requeue or fail tasks whose lease expired (no promoting)."""
    _run_scheduler(state, promote=False, **options)


@orch.command()
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@click.option(
    "--worker", "worker_name", metavar="NAME",
    help="Only check that worker NAME is alive (its registration has not expired): exit 0 if so, else 1. "
    "A container healthcheck for `orch worker --name NAME`.",
)
@queue_option(
    "With --worker: a queue the worker serves (repeatable), besides every known queue.  [default: default]",
    "queues", multiple=True, envvar="ORCH_QUEUES", show_envvar=True, callback=weighted_queues,
)
@click.option(
    "--scheduler", "scheduler_only", is_flag=True,
    help="Only check that promoting and reaping keep up (no task overdue by 10 s): exit 0 if so, else 1. "
    "A container healthcheck for `orch scheduler`.",
)
@click.option(
    "--repair", is_flag=True,
    help="First repair what hand-written data broke and can be derived (see README, Hostile data), "
    "printing each action; then check.",
)
@click.pass_obj
def doctor(
    state: CliState, /, as_json: bool, worker_name: str | None, queues: Sequence[tuple[str, int]],
    scheduler_only: bool, repair: bool,
) -> None:
    """Check the Redis server and the queues; exit 1 when something is wrong.

    Version, persistence, eviction policy, memory, latency, scripts loaded, live workers
    (each counted once), stuck tasks (overdue or with long-expired leases: no scheduler
    running?), queues with pending tasks that no live worker serves, and each queue's
    data: keys of the wrong type, counters, records in no index, index entries with no
    record, the known-queues set (read in bounded SCAN batches; --repair mends them).
    """
    if worker_name is not None and scheduler_only:
        raise CliError("give --worker NAME or --scheduler, not both")
    if repair and (worker_name is not None or scheduler_only):
        raise CliError("--repair checks everything: give it without --worker or --scheduler")
    app = state.app()
    checks: list[Check]
    if worker_name is not None:
        checks = [_worker_check(app, worker_name, [q for q, _ in queues] or [DEFAULT_QUEUE])]
    elif scheduler_only:
        checks = scheduler_checks(app.redis, app.settings.prefix)
    else:
        if repair:
            for line in integrity.repair(app.redis, app.settings.prefix, events_maxlen=app.settings.events_maxlen):
                click.echo(f"[REPAIRED] {line}", err=as_json)
        checks = run_checks(app.redis, app.settings.prefix) + integrity.integrity_checks(app.redis, app.settings.prefix)
    if as_json:
        _print_json([{"check": c.name, "status": c.status.value, "detail": c.detail} for c in checks])
    else:
        for c in checks:
            click.echo(f"[{c.status.value.upper():>4}] {c.name:<12} {c.detail}")
    if any(c.status is not Status.OK for c in checks):
        click.get_current_context().exit(EXIT_PROBLEM)


def _worker_check(app: Orchestrator, name: str, queues: Sequence[str]) -> Check:
    alive = worker_queues(app.redis, app.settings.prefix, name, queues)
    if alive:
        return Check(f"worker {name}", Status.OK, f"alive (queues {', '.join(alive)})")
    return Check(f"worker {name}", Status.FAIL, "not alive: no live registration in any queue")
