"""The import layering of ARCHITECTURE.md stays true: no upward import, no cycle.

The checker (``tests/unit/layers.py``) is itself tested on small synthetic packages, so a
checker that sees nothing cannot pass for a clean graph.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from orchestrator.version import __version__
from tests.unit import layers
from tests.unit.layers import ROOT, cycles, layer, read_graph, upward


def test_no_lower_layer_imports_a_higher_one():
    assert upward(read_graph()) == []


def test_the_package_has_no_import_cycle():
    assert cycles(read_graph()) == []


def test_faces_never_call_scripts():
    """The CLI and the demo (later the HTTP server) go through the API, never ``transitions``."""
    graph = read_graph()
    assert [
        (module, target)
        for module, target in graph.edges()
        if layer(module) == "faces"
        and module != "orchestrator"
        and target in ("orchestrator.transitions", "orchestrator.script_calls")
    ] == []


def test_the_layer_table_names_modules_that_exist():
    modules = set(read_graph().modules)
    for name in layers.FOUNDATION | layers.SCRIPTS:
        assert f"orchestrator.{name}" in modules, name


def test_every_module_says_what_it_owns():
    for path in sorted(ROOT.rglob("*.py")):
        docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        assert docstring, f"{path.relative_to(ROOT.parent)} has no module docstring"


def test_the_version_is_the_projects():
    pyproject = (ROOT.parent / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^version = "(.+)"$', pyproject, re.MULTILINE)[1] == __version__  # type: ignore[index]


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        ("orchestrator.errors", "foundation"),
        ("orchestrator.keys", "foundation"),
        ("orchestrator.transitions", "scripts"),
        ("orchestrator.client", "api"),
        ("orchestrator.worker.pool", "api"),
        ("orchestrator.cli.views", "faces"),
        ("orchestrator.demo.run", "faces"),
        ("orchestrator", "faces"),
    ],
)
def test_layers_of_known_modules(module, expected):
    assert layer(module) == expected


# -------------------------------------------------------- the checker itself


def write(root: Path, files: dict[str, str]) -> Path:
    package = root / "orchestrator"
    for name, text in {"__init__.py": '"""p"""\n', **files}.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return package


def test_checker_reports_a_foundation_module_that_imports_a_face(tmp_path):
    package = write(tmp_path, {
        "keys.py": "def f():\n    from .cli import views\n",
        "cli/__init__.py": "",
        "cli/views.py": "from ..keys import f\n",
    })
    assert upward(read_graph(package)) == [
        "orchestrator.keys (foundation) -> orchestrator.cli.views (faces)"
    ]


def test_checker_reports_a_cycle_but_not_one_through_type_checking(tmp_path):
    package = write(tmp_path, {
        "client.py": "from . import handle\n",
        "handle.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .client import X\n",
        "scheduler.py": "from .worker import run\n",
        "worker.py": "import orchestrator.scheduler\n",
    })
    assert cycles(read_graph(package)) == [
        ["orchestrator.scheduler", "orchestrator.worker", "orchestrator.scheduler"]
    ]
