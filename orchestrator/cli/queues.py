"""The ``orch queues`` commands: ``declare`` (a queue's shards) and ``shards`` (the layouts).

Owns their options and printing; each is one call of the API (``Orchestrator.declare_queue``,
``shard_layouts``): no keys, no script calls here. Registered on the ``orch`` group of
``commands`` when ``orchestrator.cli`` is imported.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import click

from .commands import CliState, _print_json, orch
from .options import queue_name


@orch.group()
def queues() -> None:
    """Queue declarations: declare (shards), shards (list the sharded queues)."""


@queues.command()
@click.argument("queue", callback=queue_name)
@click.option("--shards", type=int, required=True, help="Shards (1-64) to spread the queue over; 1: a plain queue.")
@click.pass_obj
def declare(state: CliState, /, queue: str, shards: int) -> None:
    """Spread QUEUE over --shards physical queues (on a Redis Cluster, on as many masters as
    there are). Refused (exit 2) while tasks of QUEUE wait, unless K is unchanged."""
    layout = state.app().declare_queue(queue, shards=shards)
    where = [f"{q} on {m}" for q, m in zip(layout.queues, layout.masters, strict=True)] or list(layout.queues)
    click.echo(f"queue {queue}: {layout.shards} shard(s): {', '.join(where)}")


@queues.command(name="shards")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@click.pass_obj
def list_shards(state: CliState, /, as_json: bool) -> None:
    """Every sharded queue and its shards' physical queue names (shard 0 first)."""
    layouts = state.app().shard_layouts()
    if as_json:
        _print_json({"shards": {q: list(names) for q, names in layouts.items()}})
        return
    if not layouts:
        click.echo("no sharded queues")
    for q, names in sorted(layouts.items()):
        click.echo(f"{q}: {len(names)} shards: {', '.join(names)}")
