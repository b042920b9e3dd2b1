"""The ``orch serve`` command: the HTTP API (``orchestrator.server``) on uvicorn.

Owns its options (host, port, read-only, ``--app`` modules) and turning them into a call
of ``orchestrator.server.run.run_server``, imported only when the command runs: the rest
of the CLI works without the ``server`` extra. Registered on the ``orch`` group of
``commands`` when ``orchestrator.cli`` is imported.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import click

from .commands import CliError, CliState, _load, orch
from .options import configure_logging, logging_options


@orch.command()
@click.option("--host", default="127.0.0.1", show_default=True, envvar="ORCH_SERVE_HOST", show_envvar=True,
              help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, envvar="ORCH_SERVE_PORT",
              show_envvar=True, help="Port to listen on.")
@click.option("--read-only", is_flag=True, help="Serve no route that changes anything (they are not in the "
              "OpenAPI document either).")
@click.option(
    "-A", "--app", "apps", multiple=True, envvar="ORCH_APP", show_envvar=True, metavar="MODULE",
    help="Module that registers tasks (repeatable): an HTTP enqueue takes only their names, each on its declared "
    "queue with its options and signature check, as `orch enqueue --app` does.  [default: any name, as given]",
)
@click.option("--allowed-host", "allowed_hosts", multiple=True, metavar="NAME",
              help="A Host name (any port) accepted besides loopback ones, * for any (repeatable).  [default: "
              "loopback names; any Host when a token is set]")
@click.option("--allowed-origin", "allowed_origins", multiple=True, metavar="URL",
              help="An Origin (scheme://host[:port]) a browser may call from besides the server's own, * for any "
              "(repeatable).")
@click.option("--metrics-need-token", is_flag=True, help="/metrics needs the read (or full) token.")
@logging_options
@click.pass_obj
def serve(
    state: CliState, /, host: str, port: int, read_only: bool, apps: tuple[str, ...], allowed_hosts: tuple[str, ...],
    allowed_origins: tuple[str, ...], metrics_need_token: bool, verbose: bool, log_level: str,
) -> None:
    """Serve the HTTP API: REST under /api/v1 (OpenAPI at /api/v1/openapi.json), live
    events, /metrics, /healthz and /readyz, until SIGTERM or SIGINT.

    ORCH_API_TOKEN allows everything, ORCH_API_READ_TOKEN GET only, as "Authorization:
    Bearer TOKEN" (or the session cookie of POST /api/v1/session). With no token the API is
    open, to loopback Hosts only, and --host must be a loopback address (else exit 2).
    """
    run_server = _load("orchestrator.server.run", "run_server")
    from ..server.auth import AuthConfig, check_bind

    auth = AuthConfig.from_env(metrics_need_token=metrics_need_token, allowed_hosts=allowed_hosts,
                               allowed_origins=allowed_origins)
    check_bind(host, auth)  # refused before Redis is touched or a module imported
    app = state.app()
    registry = None
    if apps:
        from ..worker.registry import load_tasks

        registry = load_tasks(apps)
        if not registry:
            raise CliError(f"--app {' '.join(apps)} registers no task: every enqueue would be refused")
    configure_logging(verbose, log_level)
    code = run_server(app, host=host, port=port, read_only=read_only, registry=registry, auth=auth,
                      log_level="debug" if verbose else log_level)
    click.get_current_context().exit(code)
