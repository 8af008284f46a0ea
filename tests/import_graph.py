"""Reading a package's import graph from its source, for tests that keep dependencies one way.

Every ``import`` counts - at module level, inside functions (the lazy imports that used to hide
cycles) and under ``if TYPE_CHECKING`` - so a cycle cannot come back disguised as a late import.
The graph is read with ``ast``; nothing is imported.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator

__all__ = ["describe", "find_cycle", "import_graph", "imported_names", "module_files"]


def module_files(package_dir: Path, package: str | None = None) -> dict[str, tuple[Path, bool]]:
    """``{dotted module name: (file, is_package)}`` for every ``.py`` file under ``package_dir``.

    ``package`` is the directory's dotted name (``procman.interface`` for a subpackage); by
    default its directory name (a top-level package)."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = (package or package_dir.name, *path.relative_to(package_dir).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return modules


def _full_base(name: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` statement of module ``name`` reads from."""
    if not node.level:
        return node.module or ""
    base = name if is_package else name.rpartition(".")[0]
    for _ in range(node.level - 1):
        base = base.rpartition(".")[0]
    return f"{base}.{node.module}" if node.module else base


def imported_modules(name: str, is_package: bool, node: ast.Import | ast.ImportFrom,
                     modules: dict[str, object]) -> set[str]:
    """The modules of the package that one import statement of module ``name`` loads."""
    if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
    else:
        base = _full_base(name, is_package, node)
        # ``from pkg import sub`` loads pkg.sub when that is a module, else it takes a name of pkg.
        targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                   for alias in node.names]
    return {target for target in targets if target in modules and target != name}


def _import_nodes(path: Path) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node


def import_graph(package_dir: Path, package: str | None = None) -> dict[str, dict[str, int]]:
    """``{module: {imported module: line of the first such import}}`` within the package
    (``package``: its dotted name, see :func:`module_files`)."""
    modules = module_files(package_dir, package)
    graph: dict[str, dict[str, int]] = {}
    for name, (path, is_package) in modules.items():
        edges = graph.setdefault(name, {})
        for node in _import_nodes(path):
            for target in imported_modules(name, is_package, node, modules):
                edges.setdefault(target, node.lineno)
    return graph


def imported_names(package_dir: Path, package: str | None = None) -> dict[str, dict[str, int]]:
    """``{module: {absolute dotted name imported: line}}`` for every import, inside the package
    or not (``from a.b import c`` gives ``a.b.c``; ``import a.b`` gives ``a.b``)."""
    names: dict[str, dict[str, int]] = {}
    for name, (path, is_package) in module_files(package_dir, package).items():
        found = names.setdefault(name, {})
        for node in _import_nodes(path):
            if isinstance(node, ast.Import):
                dotted = [alias.name for alias in node.names]
            else:
                base = _full_base(name, is_package, node)
                dotted = [f"{base}.{alias.name}" for alias in node.names]
            for target in dotted:
                found.setdefault(target, node.lineno)
    return names


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None if the graph is acyclic (iterative DFS)."""
    done: set[str] = set()
    for root in sorted(graph):
        if root in done:
            continue
        path: list[str] = [root]
        on_path = {root}
        stack = [iter(sorted(graph[root]))]
        while stack:
            target = next(stack[-1], None)
            if target is None:
                stack.pop()
                done.add(path[-1])
                on_path.discard(path.pop())
            elif target in on_path:
                return path[path.index(target):] + [target]
            elif target not in done:
                path.append(target)
                on_path.add(target)
                stack.append(iter(sorted(graph[target])))
    return None


def describe(cycle: list[str], graph: dict[str, dict[str, int]]) -> str:
    """``a (line 3) -> b (line 7) -> a``: a cycle with the line of each import."""
    return " -> ".join(
        f"{a} (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:])
    ) + f" -> {cycle[-1]}"
