"""Imports point one way (ARCHITECTURE.md): no module of `collector`, `adapters` or `api` reaches
itself through its imports, and the core never imports the API; only the command line and the
demo, which wire the application together, do.

Every import statement that runs counts, at the top of a module or inside a function: a
deferred import is still a dependency. Imports for type checkers only (`if TYPE_CHECKING:`)
never run, so they cannot close a circle. Adapters are found at run time through the registry,
by name.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("collector", "adapters", "api")
# these assemble the application from its parts, the API included
WIRING = ("collector.cli", "collector.demo")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    """Every module of the three packages by dotted name."""
    return {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def import_statements(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement of a module, at any depth, except those under
    `if TYPE_CHECKING:`."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                yield from import_statements(ast.Module(body=[child], type_ignores=[]))
        else:
            yield from import_statements(node)


def imported_modules(path: Path, name: str, known: set[str]) -> Iterator[str]:
    """The modules of `known` a module imports, each the deepest one the statement names:
    `import a.b.c` and `from a.b import c` (c a module) depend on `a.b.c`, not on the
    packages `a` and `a.b` that Python initialises on the way."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in import_statements(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target:
                yield target


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of the three packages it imports."""
    known = modules()
    return {name: set(imported_modules(path, name, set(known))) - {name}
            for name, path in known.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle through each group of modules that import each other (Tarjan's strongly
    connected components, each shown as a path that starts and ends at the same module)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_path_within(graph, group) for group in groups]


def _path_within(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """A shortest circle from the group's first module back to itself, inside the group."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & group):
                if nxt == start:
                    return [*paths[node], start]
                if nxt not in paths:
                    paths[nxt] = [*paths[node], nxt]
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"{sorted(group)} is not a circle")


def test_the_graph_sees_every_package_and_deferred_imports() -> None:
    graph = import_graph()
    assert {"collector.runtime", "adapters.base", "api.app", "collector.ledger"} <= graph.keys()
    assert "collector.ledger.engine" in graph["collector.ledger"]
    assert "api.server" in graph["collector.cli"]  # imported inside `cmd_run`


def test_circles_are_found() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert circles(graph) == [["a", "b", "c", "a"]]


def test_no_module_reaches_itself_through_its_imports() -> None:
    found = circles(import_graph())
    assert not found, "import circles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_the_core_never_imports_the_api() -> None:
    wrong = sorted(
        f"{name} imports {target}"
        for name, targets in import_graph().items()
        if name.split(".")[0] == "collector"
        and not any(name == w or name.startswith(w + ".") for w in WIRING)
        for target in targets if target.split(".")[0] == "api"
    )
    assert not wrong, "the core imports the API (wire it in collector/cli.py):\n" + "\n".join(wrong)
