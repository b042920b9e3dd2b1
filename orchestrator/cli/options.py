"""The options of the ``orch`` command line: click option types and setting-bound options.

Owns how each option is parsed and checked (JSON documents, queue names, weighted queue
lists), how a setting becomes an option documented from its pydantic description with an
ORCH_* environment variable, and the logging options. Does not define commands (``cli``).
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click
from click.core import ParameterSource
from pydantic import BaseModel

from ..config import REDIS_URL_ENV, redis_url_problem
from ..errors import InvalidQueueName
from ..keys import validate_queue_name

F = TypeVar("F", bound=Callable[..., Any])
LOG_FORMAT = "%(asctime)s %(message)s"
LOG_LEVELS = ("debug", "info", "warning", "error")


def json_value(kind: type, label: str) -> Callable[[click.Context, click.Parameter, str], Any]:
    """An option callback parsing a JSON document of one type (list for --args, object for --kwargs)."""

    def parse(ctx: click.Context, param: click.Parameter, value: str) -> Any:
        try:
            data = json.loads(value)
        except ValueError as exc:
            raise click.BadParameter(f"not valid JSON: {exc}", ctx, param) from None
        except RecursionError:
            raise click.BadParameter("JSON nested too deeply to read", ctx, param) from None
        if not isinstance(data, kind):
            raise click.BadParameter(f"must be a JSON {label}, not {json.dumps(data)[:60]}", ctx, param)
        return data

    return parse


def queue_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return validate_queue_name(value)
    except InvalidQueueName as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def queue_names(ctx: click.Context, param: click.Parameter, value: Sequence[str]) -> tuple[str, ...]:
    return tuple(queue_name(ctx, param, name) for name in value)


def weighted_queues(ctx: click.Context, param: click.Parameter, value: Sequence[str]) -> tuple[tuple[str, int], ...]:
    """``NAME[:WEIGHT]`` options as (name, weight) pairs; weight 1 when not given."""
    out = []
    for spec in value:
        name, _, weight = spec.rpartition(":") if ":" in spec else (spec, "", "1")
        if not weight.isdigit() or int(weight) < 1:
            raise click.BadParameter(f"weight of queue {name!r} must be an integer >= 1, not {weight!r}", ctx, param)
        out.append((queue_name(ctx, param, name), int(weight)))
    return tuple(out)


def redis_url(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """--redis-url / ORCH_REDIS_URL, checked before any command runs; only an unset
    variable means the default (click reads an empty one as unset)."""
    source = ctx.get_parameter_source(param.name or "")
    if source is ParameterSource.DEFAULT and os.environ.get(REDIS_URL_ENV) == "":
        raise click.BadParameter(f"{REDIS_URL_ENV} is set but empty: unset it for the default {value}", ctx, param)
    problem = redis_url_problem(value)
    if problem is not None:
        where = f"{REDIS_URL_ENV}: " if source is ParameterSource.ENVIRONMENT else ""
        raise click.BadParameter(where + problem, ctx, param)
    return value


def optional_queue(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    return None if value is None else queue_name(ctx, param, value)


def doc(model: type[BaseModel], name: str) -> str:
    """An option's help text: the setting's documented description and default (defined once, in config)."""
    info = model.model_fields[name]
    default = info.default
    if isinstance(default, tuple):
        default = " ".join(":".join(map(str, d)) if isinstance(d, tuple) else str(d) for d in default) or "all"
    return f"{info.description}" if default is None else f"{info.description}  [default: {default}]"


def queue_option(help: str, *name: str, **kwargs: Any) -> Callable[[F], F]:
    """The -q/--queue option of one command."""
    return click.option("-q", "--queue", *name, metavar="NAME", help=help, **kwargs)


def setting(model: type[BaseModel], field: str, *decls: str, envvar: str, **kwargs: Any) -> Callable[[F], F]:
    """An option for one setting of ``model``, documented from it, with an environment variable."""
    return click.option(*decls, envvar=envvar, show_envvar=True, help=doc(model, field), **kwargs)


def given(**values: Any) -> dict[str, Any]:
    """The options the user set (None and empty mean: the setting's default)."""
    return {k: v for k, v in values.items() if v is not None and v != ()}


def logging_options(fn: F) -> F:
    fn = click.option(
        "--log-level", type=click.Choice(LOG_LEVELS, case_sensitive=False), default="info",
        envvar="ORCH_LOG_LEVEL", show_envvar=True, show_default=True, help="Lowest level of the messages logged.",
    )(fn)
    return click.option("-v", "--verbose", is_flag=True, help="Log debug messages (same as --log-level debug).")(fn)


def configure_logging(verbose: bool, level: str) -> None:
    logging.basicConfig(level="DEBUG" if verbose else level.upper(), format=LOG_FORMAT)
