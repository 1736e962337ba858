"""No import cycle among Cartridge's modules.

The graph is read from the source, so an import inside a function counts as much as one at the
top of a module: a cycle hidden in a function is still two modules that cannot be understood,
tested or loaded one without the other. Importing `a.b.c` also imports the packages `a` and
`a.b`, so those are edges too, except a module's own packages, which Python has always started
loading before the module itself."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("app", "workers")


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        imported: set[str] = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                imported.add(base)
                # `from app.builds import queries` imports the module app.builds.queries.
                imported.update(f"{base}.{alias.name}" for alias in node.names)
        edges = set()
        for target in imported:
            edges.update(m for m in [*_parents(target), target] if m in modules)
        edges.difference_update([name, *_parents(name)])
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_of_app_or_workers_is_part_of_an_import_cycle() -> None:
    graph = import_graph()
    assert len(graph) > 50  # the walk found the code
    assert cycles(graph) == []


def test_the_cycle_check_finds_a_cycle_through_a_function_level_import() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_every_module_imports_in_either_order_in_a_fresh_interpreter() -> None:
    """A module that loads only after another one was imported hides a cycle or an order
    dependency: all of them are imported in a fresh interpreter, in name order and reversed."""
    names = sorted(_modules())
    for order in (names, names[::-1]):
        code = "import importlib, sys\nfor name in sys.argv[1:]: importlib.import_module(name)"
        result = subprocess.run(
            [sys.executable, "-c", code, *order], capture_output=True, text=True, cwd=ROOT
        )
        assert result.returncode == 0, result.stderr
