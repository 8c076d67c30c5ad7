"""No import circles in lib/feedops.

The graph is read from the source with ast, not by importing. Edges:
* ``import feedops.x`` and ``from feedops.x import y`` / ``from .x import y``, at module level
  **and inside functions and methods** (a late import only hides a circle: it still runs);
  ``from pkg import name`` points at the submodule ``pkg.name`` when there is one, else at
  the package's ``__init__``;
* ``importlib.import_module("feedops.x")`` with a literal name (how a circle used to hide);
* not the imports under ``if TYPE_CHECKING:``, which never run.
Importing ``a.b.c`` also runs ``a/__init__`` and ``a/b/__init__``; those implicit edges are
left out (every package ``__init__`` here is a docstring or re-exports its own modules).
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

LIB = ROOT / "lib"

#: (importer, imported) -> why the edge is still there. Each one closes a circle that is still open;
#: remove the entry with the edge (the test fails on an entry whose edge no longer exists).
KNOWN_EDGES: dict[tuple[str, str], str] = {}


def module_name(path: Path, lib: Path = LIB) -> tuple[str, bool]:
    parts = list(path.relative_to(lib).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_package else parts), is_package


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def import_graph(lib: Path = LIB) -> dict[str, dict[str, int]]:
    """module -> {imported feedops module: line of the first import}."""
    files = {module_name(p, lib): p for p in sorted((lib / "feedops").rglob("*.py"))}
    modules = {name for name, _ in files}
    graph: dict[str, dict[str, int]] = {}
    for (name, is_package), path in files.items():
        package = name if is_package else name.rpartition(".")[0]
        edges: dict[str, int] = {}

        def add(target: str, line: int, edges=edges) -> None:
            if target.split(".")[0] == "feedops":
                edges.setdefault(target, line)

        def visit(node: ast.AST, package=package, add=add) -> None:
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                for child in node.orelse:
                    visit(child)
                return
            if isinstance(node, ast.Import):
                for alias in node.names:
                    add(alias.name, node.lineno)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                for alias in node.names:
                    submodule = f"{source}.{alias.name}"
                    add(submodule if submodule in modules else source, node.lineno)
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"
                  and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                add(node.args[0].value, node.lineno)
            for child in ast.iter_child_nodes(node):
                visit(child)

        visit(ast.parse(path.read_text(), filename=str(path)))
        graph[name] = {target: line for target, line in edges.items() if target in modules and target != name}
    return graph


def circles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def describe(graph: dict[str, dict[str, int]], component: list[str]) -> str:
    edges = [f"  {a} (line {line}) -> {b}" for a in component for b, line in sorted(graph[a].items()) if b in component]
    return "circle: " + ", ".join(component) + "\n" + "\n".join(edges)


def test_the_graph_sees_late_and_named_imports():
    graph = import_graph()
    assert "feedops.sim.mdapi" in graph["feedops.ctpapi"]  # inside load_api
    assert graph["feedops.sim.structs"].keys() >= {"feedops.ctpbinding", "feedops.sim.fields"}
    assert "feedops.validate.runner" in graph["feedops.validate"]  # a package __init__ re-exporting


def test_circles_are_found(tmp_path):
    """The detector on a small tree: a late import closing a circle, one through importlib, one under TYPE_CHECKING."""
    pkg = tmp_path / "feedops"
    (pkg / "sim").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sim" / "__init__.py").write_text("")
    (pkg / "loader.py").write_text("import importlib\n\ndef load():\n    return importlib.import_module('feedops.sim.api')\n")
    (pkg / "sim" / "api.py").write_text("def f():\n    from ..loader import load\n")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import b\n")
    (pkg / "b.py").write_text("from . import a\n")
    assert circles(import_graph(tmp_path)) == [["feedops.loader", "feedops.sim.api"]]


def test_no_import_circles():
    graph = import_graph()
    stale = [edge for edge in KNOWN_EDGES if edge[1] not in graph.get(edge[0], {})]
    assert not stale, f"these known edges are gone: remove them from KNOWN_EDGES: {stale}"
    for importer, imported in KNOWN_EDGES:
        del graph[importer][imported]
    found = circles(graph)
    assert not found, "import circles in lib/feedops:\n" + "\n".join(describe(graph, c) for c in found)
