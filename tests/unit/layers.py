"""The package's import graph, read from the source with ``ast``, and its layers.

Owns parsing every module of ``orchestrator/`` for the modules it imports (module level
and inside functions; imports under ``if TYPE_CHECKING:`` are kept apart, they never
run) and the layer table of ARCHITECTURE.md. ``test_layers.py`` checks the rules;
``python -m tests.unit.layers`` prints the graph layer by layer. Imports nothing of the
package (it reads files), so a broken import cannot hide a broken layer.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = "orchestrator"
ROOT = Path(__file__).resolve().parents[2] / PACKAGE

# ARCHITECTURE.md, "Layers": a module may import its own layer and the layers below.
LAYERS = ("foundation", "scripts", "api", "faces")
FOUNDATION = {
    "errors", "config", "models", "keys", "ids", "context", "version", "redis_local", "local_sentinel", "connection",
    "sanitize", "reading", "records", "metrics_records", "schedules", "fakes",
}
SCRIPTS = {"transitions", "script_calls", "cluster_calls", "replies", "luasource"}
FACES = {"cli", "demo", "server", "testing", "__main__", ""}  # "": the package's __init__


def layer(module: str) -> str:
    """The layer of ``orchestrator.x.y``: listed ones by their first part, the rest ``api``."""
    head = module.removeprefix(PACKAGE).lstrip(".").split(".")[0]
    if head in FOUNDATION:
        return "foundation"
    if head in SCRIPTS:
        return "scripts"
    if head in FACES:
        return "faces"
    return "api"  # client, handle, health, scheduler, worker/, and new modules by default


def rank(module: str) -> int:
    return LAYERS.index(layer(module))


@dataclass
class Graph:
    """Edges between modules of the package: ``runtime`` ones run, ``typing`` ones do not."""

    modules: list[str] = field(default_factory=list)
    runtime: dict[str, set[str]] = field(default_factory=dict)
    typing: dict[str, set[str]] = field(default_factory=dict)

    def edges(self) -> Iterator[tuple[str, str]]:
        for source in self.modules:
            for target in sorted(self.runtime[source] | self.typing[source]):
                yield source, target


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = [PACKAGE, *path.relative_to(root).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The package modules one import statement loads (``from . import views`` is the module)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = module.split(".") if is_package else module.split(".")[:-1]
        if node.level:
            base = base[: len(base) - node.level + 1]
            stem = ".".join([*base, node.module] if node.module else base)
        else:
            stem = node.module or ""
        names = [f"{stem}.{alias.name}" if f"{stem}.{alias.name}" in known else stem for alias in node.names]
    return {name for name in names if name == PACKAGE or name.startswith(PACKAGE + ".")}


def _walk(tree: ast.AST, in_typing: bool = False) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, in_typing
        elif isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.body:
                yield from _walk(ast.Module(body=[child], type_ignores=[]), True)
            for child in node.orelse:
                yield from _walk(ast.Module(body=[child], type_ignores=[]), in_typing)
        else:
            yield from _walk(node, in_typing)


def read_graph(root: Path = ROOT) -> Graph:
    paths = sorted(root.rglob("*.py"))
    graph = Graph(modules=[module_name(path, root) for path in paths])
    known = set(graph.modules)
    for path, module in zip(paths, graph.modules, strict=True):
        graph.runtime[module], graph.typing[module] = set(), set()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, in_typing in _walk(tree):
            targets = _targets(node, module, path.name == "__init__.py", known) - {module}
            (graph.typing if in_typing else graph.runtime)[module].update(targets)
    return graph


def upward(graph: Graph) -> list[str]:
    """Every import of a higher layer by a lower one, as ``a (layer) -> b (layer)``."""
    return [
        f"{source} ({layer(source)}) -> {target} ({layer(target)})"
        for source, target in graph.edges()
        if rank(target) > rank(source)
    ]


def cycles(graph: Graph) -> list[list[str]]:
    """Import cycles among runtime imports (depth-first search; each cycle once)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(graph.runtime.get(module, ())):
            if state.get(target) == 1:
                found.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in graph.modules:
        if module not in state:
            visit(module)
    return found


def render(graph: Graph) -> str:
    """The graph as text, layer by layer from the bottom: ``module -> imports``."""
    lines = []
    for name in LAYERS:
        lines.append(f"== {name}")
        for module in graph.modules:
            if layer(module) != name:
                continue
            runtime = sorted(graph.runtime[module])
            typing = sorted(graph.typing[module] - graph.runtime[module])
            shown = ", ".join([*runtime, *(f"{t} (typing only)" for t in typing)]) or "(nothing of the package)"
            lines.append(f"  {module} -> {shown}")
    lines.append(f"upward imports: {len(upward(graph))}; cycles: {len(cycles(graph))}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(render(read_graph()) + "\n")
