"""The command line: the click group ``orch``, the only module that prints or configures logging.

Owns the commands, their options (each setting with its ORCH_* environment variable,
built by ``options``), printing, and the one place where every expected error
becomes a single ``Error: ...`` line on stderr with its documented exit code
(``EXIT_CODES``): ``OrchGroup``. Does not hold business logic: every read and change
is a call of the operator API (``Orchestrator``, ``Queue``), formatted by ``views``; no
keys, no script calls here. The commands that start workers and schedulers, and
``doctor``, are in ``services``.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, get_args

import click
import pydantic
import redis
from click.core import ParameterSource

from ..client import DEFAULT_QUEUE, DEFAULT_TIMEOUT, Orchestrator
from ..config import (
    DEFAULT_REDIS_URL,
    PREFIX_ENV,
    REDIS_URL_ENV,
    Durability,
    Settings,
)
from ..errors import (
    ConfigurationError,
    NotReplicated,
    OrchestratorError,
    OutOfMemory,
    RedisCommandError,
    RedisUnavailable,
)
from ..keys import DEFAULT_PREFIX
from ..models import DEFAULT_PRIORITY, RetryPolicy
from ..sanitize import redact, redact_url, redis_error_text
from ..version import __version__
from .options import (
    doc,
    given,
    json_value,
    optional_queue,
    queue_option,
    redis_url,
    setting,
)

EXIT_PROBLEM = 1  # the command ran and found something wrong (doctor; a worker not alive)
EXIT_USAGE = 2  # bad options, arguments or settings; nothing was written
EXIT_UNREACHABLE = 3  # Redis could not be reached (refused, DNS, timeout, connection lost)
EXIT_REDIS_ERROR = 4  # Redis answered with an error: authentication, database index, ACL, out of memory
EXIT_CODES = """\b
Exit codes:
  0  success
  1  the command found a problem (orch doctor; orch doctor --worker: not alive)
  2  usage error: bad option, argument or setting (nothing was written)
  3  cannot reach Redis (connection refused, unknown host, timeout)
  4  Redis answered with an error (wrong password, database index, ACL, out of memory)"""


class CliError(click.ClickException):
    """Shown as one ``Error: ...`` line; exit code 2."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class RedisUnreachable(CliError):
    """Redis could not be reached; exit code 3."""

    exit_code = EXIT_UNREACHABLE


class RedisFailure(CliError):
    """Redis answered with an error that is not bad input; exit code 4."""

    exit_code = EXIT_REDIS_ERROR


@dataclass
class CliState:
    """The global options, and the Orchestrator built from them on first use."""

    redis_url: str
    prefix: str
    _app: Orchestrator | None = None
    durability: dict[str, Any] = field(default_factory=dict)  # durability, replicas, replica_timeout: as given

    def app(self, **settings: Any) -> Orchestrator:
        """The Orchestrator; ``settings`` (e.g. lease_timeout) apply when it is first built."""
        if self._app is None:
            settings = {**self.durability, **settings}
            app = Orchestrator(settings=Settings(redis_url=self.redis_url, prefix=self.prefix, **settings))
            try:
                app.redis  # noqa: B018 - builds the client: a malformed URL fails here, not mid-command
            except ValueError as exc:
                raise CliError(f"invalid Redis URL {redact_url(self.redis_url)}: {exc}") from None
            self._app = app
        return self._app

    def close(self) -> None:
        if self._app is not None:
            self._app.close()
            self._app = None


def _one_line(exc: Exception, ctx: click.Context) -> CliError:
    """The single line every failure is shown as."""
    state = ctx.find_object(CliState)
    url = redact_url(state.redis_url if state else DEFAULT_REDIS_URL)
    if isinstance(exc, RedisUnavailable | RedisCommandError) and isinstance(exc.__cause__, redis.RedisError):
        exc = exc.__cause__  # the producer API wraps redis-py's error: shown as the raw one is
    if isinstance(exc, click.UsageError):
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        return CliError(exc.format_message() + hint)
    if _unreachable(exc):
        return RedisUnreachable(f"cannot reach Redis at {url}: {redis_error_text(exc)}")
    if isinstance(exc, (redis.RedisError, RedisCommandError, RedisUnavailable, OutOfMemory)):
        return RedisFailure(f"Redis at {url} answered: {redis_error_text(exc)}")
    if isinstance(exc, NotReplicated):
        return RedisFailure(str(exc))
    if isinstance(exc, ConfigurationError) and isinstance(exc.__cause__, pydantic.ValidationError):
        exc = exc.__cause__  # settings built from options: name the options
    if isinstance(exc, pydantic.ValidationError):  # settings built from options (or a malformed record)
        where = "option --{}" if exc.title.endswith("Settings") else exc.title + " field {}"
        problems = "; ".join(
            f"invalid {where.format('.'.join(map(str, e['loc'])).replace('_', '-'))}: {e['msg']}" for e in exc.errors()
        )
        return CliError(problems)
    return CliError(str(exc) or type(exc).__name__)


def _unreachable(exc: BaseException) -> bool:
    """Redis could not be reached: our RedisUnavailable or redis-py's connection errors, but
    not a refused password (redis-py files AuthenticationError under ConnectionError)."""
    if isinstance(exc, RedisUnavailable):
        return not isinstance(exc.__cause__, redis.AuthenticationError)
    return isinstance(exc, (redis.ConnectionError, redis.TimeoutError)) and not isinstance(
        exc, redis.AuthenticationError
    )


_EDGE_ERRORS = (OrchestratorError, redis.RedisError, pydantic.ValidationError)
_NO_ARGS_IS_HELP: Any = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2


class OrchGroup(click.Group):
    """A click group that turns every expected failure into one line on stderr."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except _NO_ARGS_IS_HELP:
            raise  # plain `orch` shows the help
        except click.UsageError as exc:
            ctx = exc.ctx or click.Context(self, info_name=info_name)
            raise _one_line(exc, ctx) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _one_line(exc, ctx) from None
        except _EDGE_ERRORS as exc:
            raise _scrubbed(_one_line(exc, ctx), ctx) from None


def _scrubbed(error: CliError, ctx: click.Context) -> CliError:
    """``error`` with the Redis URL's password masked wherever an exception's text quoted it."""
    state = ctx.find_object(CliState)
    return error if state is None else type(error)(redact(error.message, state.redis_url))


def _load(module: str, name: str) -> Callable[..., int]:
    """Import ``module.name`` when the command runs, so the rest of the CLI works without it."""
    try:
        fn: Callable[..., int] = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        if isinstance(exc, ImportError) and exc.name not in (module, None):
            raise  # the module exists but something it imports is broken: show it whole
        raise CliError(f"{module}.{name} is not available yet: {exc}") from None
    return fn


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


# -------------------------------------------------------------------------- commands


@click.group(cls=OrchGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES)
@click.option(
    "--redis-url", envvar=REDIS_URL_ENV, show_envvar=True, default=DEFAULT_REDIS_URL, show_default=True,
    callback=redis_url, help="Redis to use (redis://, rediss://, unix://); an empty ORCH_REDIS_URL is an error.",
)
@click.option(
    "--prefix", envvar=PREFIX_ENV, show_envvar=True, default=DEFAULT_PREFIX, show_default=True,
    help="Start of every key name.",
)
@setting(Settings, "durability", "--durability", envvar="ORCH_DURABILITY", type=click.Choice(get_args(Durability)))
@setting(Settings, "replicas", "--replicas", envvar="ORCH_REPLICAS", type=int)
@setting(Settings, "replica_timeout", "--replica-timeout", envvar="ORCH_REPLICA_TIMEOUT", type=float)
@click.version_option(__version__, prog_name="orch")
@click.pass_context
def orch(ctx: click.Context, /, redis_url: str, prefix: str, **durability: Any) -> None:
    """orchestrator: a Redis-backed, persistent, priority job queue."""
    state = CliState(redis_url, prefix, durability=given(**durability))
    ctx.obj = state
    ctx.call_on_close(state.close)


@orch.command()
@click.argument("name")
@click.option("--args", callback=json_value(list, "list"), default="[]", metavar="JSON", help="Positional arguments.")
@click.option("--kwargs", callback=json_value(dict, "object"), default="{}", metavar="JSON", help="Keyword arguments.")
@queue_option(f"Queue.  [default: {DEFAULT_QUEUE}]", callback=optional_queue)
@click.option("--priority", type=int, help=f"0 (runs first) to 9.  [default: {DEFAULT_PRIORITY}]")
@click.option("--delay", type=float, help="Seconds to wait before it may run.")
@click.option(
    "--key", help="Idempotency key: while a task enqueued with it exists (result_ttl after it ends), return that task."
)
@click.option("--unique-key", help="While a task enqueued with this key is unfinished, return that task.")
@click.option("--max-retries", type=int, help=doc(RetryPolicy, "max_retries"))
@click.option("--timeout", type=float, help=f"Seconds an attempt may run.  [default: {DEFAULT_TIMEOUT:g}]")
@click.option(
    "-A", "--app", "apps", multiple=True, envvar="ORCH_APP", show_envvar=True, metavar="MODULE",
    help="Module that registers NAME (repeatable): its queue, timeout and retries apply and the arguments "
    "are checked against its signature.  [default: none, NAME is sent as given]",
)
@click.pass_obj
def enqueue(
    state: CliState, /, name: str, args: list[Any], kwargs: dict[str, Any], apps: tuple[str, ...], **options: Any
) -> None:
    """Enqueue task NAME (pkg.module:function) and print its id."""
    app = state.app()
    if apps:
        _register_from(app, apps, name)
    handle = app.enqueue(name, args, kwargs, **given(**options))
    click.echo(handle.id if handle.created else f"{handle.id} (existing task)")


def _register_from(app: Orchestrator, apps: tuple[str, ...], name: str) -> None:
    """Give ``app`` the tasks the --app modules register; NAME must be one of them."""
    from ..worker.registry import load_tasks

    tasks = load_tasks(apps)
    if name not in tasks:
        names = sorted(tasks)
        known = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "") or "none"
        raise CliError(f"task {name!r} is not registered by --app {' '.join(apps)} (registered: {known})")
    app.registry.update(tasks)


@orch.command()
@click.option("--workers", type=click.IntRange(1, 32), default=3, show_default=True, help="Worker processes to start.")
@click.option("--tasks", type=click.IntRange(1, 10_000), default=60, show_default=True, help="Tasks to enqueue.")
@click.option(
    "--kill/--no-kill", default=True, show_default=True,
    help="SIGKILL one busy worker once a third of the tasks are done.",
)
@click.option("--seed", type=int, help="Seed of the task mix (priorities, durations, failures).  [default: random]")
@click.option(
    "--duration", type=click.FloatRange(min=5), default=40.0, show_default=True,
    help="Stop after this many seconds, even with tasks unfinished.",
)
@click.pass_obj
def demo(state: CliState, /, workers: int, tasks: int, kill: bool, seed: int | None, duration: float) -> None:
    """Watch the queue at work: a scheduler, workers, priorities, retries, a killed worker, no task lost.

    Uses --redis-url / ORCH_REDIS_URL when given, touching only keys under a fresh prefix of
    its own that it removes at the end; otherwise it starts a private redis-server and stops it.
    """
    ctx = click.get_current_context()
    source = ctx.parent.get_parameter_source("redis_url") if ctx.parent is not None else None
    redis_url = None if source in (None, ParameterSource.DEFAULT) else state.redis_url
    run_demo = _load("orchestrator.demo.run", "run_demo")
    ctx.exit(run_demo(redis_url, workers=workers, tasks=tasks, kill=kill, seed=seed, duration=duration))


def main() -> None:
    """Console-script entry point (``orch``)."""
    orch(prog_name="orch")
