"""The packaging files, checked without a Docker daemon: docker-compose.yml is read as
Docker reads it (PyYAML, merge keys included) and every service's command and healthcheck
goes through the real ``orch`` command line (the long-running ones with a stand-in run);
the Dockerfiles and pyproject.toml are read for what users rely on."""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from click.testing import CliRunner, Result

from orchestrator import Orchestrator, WorkerSettings
from orchestrator.cli import orch
from orchestrator.script_calls import run
from orchestrator.worker.registry import load_tasks
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "orchestrator:local"


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def orch_services() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose()["services"].items() if s.get("image") == IMAGE}


def dockerfile(path: Path) -> list[tuple[str, str]]:
    """(instruction, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    text = path.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(" ", 1)[0], line.split(" ", 1)[1]) for line in lines]


def orch_cli(args: list[str], env: dict[str, str]) -> Result:
    clean: dict[str, str | None] = {k: None for k in os.environ if k.startswith("ORCH_")}
    return CliRunner().invoke(orch, args, env={**clean, **env})


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """Stand-ins for run_worker / run_scheduler / run_demo / run_server: record what they were given."""
    seen: list[tuple[str, Any]] = []

    def fake(module: str, name: str) -> None:
        def runner(*args: Any, **kwargs: Any) -> int:
            seen.append((name, args[1] if name in ("run_worker", "run_scheduler") else kwargs))
            return 0

        monkeypatch.setitem(sys.modules, module, types.SimpleNamespace(**{name: runner}))

    fake("orchestrator.worker", "run_worker")
    fake("orchestrator.scheduler", "run_scheduler")
    fake("orchestrator.demo.run", "run_demo")
    fake("orchestrator.server.run", "run_server")
    monkeypatch.setattr("logging.basicConfig", lambda **kw: None)
    return seen


# ----------------------------------------------------------------------------- compose


def test_compose_runs_a_durable_redis() -> None:
    service = compose()["services"]["redis"]
    command = service["command"]
    assert service["image"] == "redis:7" and command[0] == "redis-server"
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert service["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]


def test_one_image_built_once_for_every_orch_service() -> None:
    services = orch_services()
    assert set(services) == {"scheduler", "worker-1", "worker-2", "worker-3", "demo", "serve"}
    builders = [name for name, s in services.items() if "build" in s]
    assert builders == ["scheduler"] and services["scheduler"]["build"] == "."
    for name, service in services.items():
        if name not in builders:
            assert service["pull_policy"] == "never", name  # never pulled: the scheduler's build
        assert service["environment"]["ORCH_REDIS_URL"] == "redis://redis:6379/0", name
        assert service["depends_on"]["redis"]["condition"] == "service_healthy", name


def interpolated(environment: dict[str, str], values: dict[str, str]) -> dict[str, str]:
    """``environment`` with compose's ``${NAME:-}`` replaced as compose would, from ``values``."""
    out = {}
    for key, value in environment.items():
        if value.startswith("${") and value.endswith(":-}"):
            value = values.get(value[2:-3], "")
        out[key] = value
    return out


SERVE_TOKEN = "compose-token-Qm3Vx8Lr2Tw6"


@pytest.mark.parametrize("name", sorted(orch_services()))
def test_each_service_command_runs_through_the_real_cli(name: str, started: list[tuple[str, Any]]) -> None:
    service = orch_services()[name]
    result = orch_cli(service["command"], interpolated(service["environment"], {"ORCH_API_TOKEN": SERVE_TOKEN}))
    assert result.exit_code == 0, (result.output, result.exception)
    ((runner, given),) = started
    kind = service["command"][0]
    assert runner == {"worker": "run_worker", "scheduler": "run_scheduler", "demo": "run_demo", "serve": "run_server"}[
        kind]
    if kind == "serve":
        assert given["host"] == "0.0.0.0" and given["auth"].token == SERVE_TOKEN and not given["auth"].open
        assert given["registry"] == load_tasks(["orchestrator.demo.tasks"]) and not given["read_only"]
    if kind == "worker":
        assert isinstance(given, WorkerSettings)
        assert given.apps == ("orchestrator.demo.tasks",) and given.name == name
        served = {q for q, _ in given.queues}
        assert {t.options.queue for t in load_tasks(given.apps).values()} <= served, "a task nobody serves"


@pytest.mark.parametrize("name", ["worker-1", "worker-2", "worker-3"])
def test_a_worker_healthcheck_passes_exactly_while_that_worker_is_alive(
    name: str, app: Orchestrator, redis_server: RedisServer
) -> None:
    check = orch_services()[name]["healthcheck"]
    kind, command, *args = check["test"]
    assert (kind, command) == ("CMD", "orch")
    env = {"ORCH_REDIS_URL": redis_server.url}
    assert orch_cli(args, env).exit_code == 1, "no worker yet"
    run(app.redis, app._scripts("default").heartbeat(name, 60_000, {}, ()))
    assert orch_cli(args, env).exit_code == 0
    other = "worker-1" if name != "worker-1" else "worker-2"
    run(app.redis, app._scripts("default").deregister(name))
    run(app.redis, app._scripts("default").heartbeat(other, 60_000, {}, ()))
    assert orch_cli(args, env).exit_code == 1, "another worker's heartbeat does not count"


def test_the_serve_service_sets_a_token_and_refuses_to_start_without_one(started: list[tuple[str, Any]]) -> None:
    service = orch_services()["serve"]
    assert service["environment"]["ORCH_API_TOKEN"] == "${ORCH_API_TOKEN:-}"
    assert service["profiles"] == ["api"] and service["ports"] == ["127.0.0.1:8000:8000"]
    result = orch_cli(service["command"], interpolated(service["environment"], {}))
    assert result.exit_code == 2 and "ORCH_API_TOKEN" in result.output and started == []
    kind, python, flag, code = service["healthcheck"]["test"]
    assert (kind, python, flag) == ("CMD", "python", "-c") and "http://127.0.0.1:8000/readyz" in code
    assert service["command"][service["command"].index("--port") + 1] == "8000"


def test_the_scheduler_healthcheck_runs_against_redis(redis_server: RedisServer, r: redis.Redis) -> None:
    kind, command, *args = orch_services()["scheduler"]["healthcheck"]["test"]
    assert (kind, command) == ("CMD", "orch")
    result = orch_cli(args, {"ORCH_REDIS_URL": redis_server.url})
    assert result.exit_code == 0, result.output


# --------------------------------------------------------------------------- images


def test_the_image_installs_the_package_with_orch_as_entry_point() -> None:
    instructions = dockerfile(ROOT / "Dockerfile")
    assert instructions[0] == ("FROM", "python:3.11-slim")
    assert any(kind == "RUN" and 'pip install ".[server]"' in args for kind, args in instructions)  # orch serve too
    (entrypoint,) = [json.loads(args) for kind, args in instructions if kind == "ENTRYPOINT"]
    assert entrypoint == ["orch"]


def test_the_example_puts_user_tasks_on_top_of_the_image(started: list[tuple[str, Any]]) -> None:
    instructions = dockerfile(ROOT / "examples" / "docker" / "Dockerfile")
    assert instructions[0] == ("FROM", IMAGE)
    copies = [args.split() for kind, args in instructions if kind == "COPY"]
    assert ["examples", "/app/examples"] in copies
    assert ("ENV", "PYTHONPATH=/app") in instructions
    (command,) = [json.loads(args) for kind, args in instructions if kind == "CMD"]
    result = orch_cli(command, {"ORCH_REDIS_URL": "redis://redis:6379/0"})
    assert result.exit_code == 0, result.output
    ((_, settings),) = started
    tasks = load_tasks(settings.apps)  # the copied package imports, and registers tasks
    assert tasks and {t.options.queue for t in tasks.values()} <= {q for q, _ in settings.queues}


def test_pyproject_names_a_free_distribution_and_an_spdx_license() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["name"] == "orchestrator-queue"  # `orchestrator` is taken on the index
    assert project["project"]["license"] == "MIT"
    assert project["project"]["scripts"] == {"orch": "orchestrator.cli:main"}
    assert "setuptools>=77" in project["build-system"]["requires"]  # the first with SPDX licenses
