"""django_glue's modules import one another one way only: the import graph has no cycle.

Every ``import`` counts - at module level, inside functions (the lazy imports that used to hide
cycles) and under ``if TYPE_CHECKING`` - so a cycle cannot come back disguised as a late import.
The graph is read from the source with ``ast`` (``tests/import_graph.py``); nothing is imported.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import django_glue
from tests.import_graph import describe, find_cycle, import_graph, imported_names

PACKAGE_DIR = Path(django_glue.__file__).resolve().parent


def test_django_glue_has_no_import_cycle() -> None:
    graph = import_graph(PACKAGE_DIR)
    assert "django_glue.handler" in graph and graph["django_glue.default_consumers"], graph
    cycle = find_cycle(graph)
    assert cycle is None, (
        "import cycle in django_glue: " + describe(cycle, graph)
        + "; make dependencies point one way (move the shared piece down, or pass it in)"
    )


def test_the_layers_point_down() -> None:
    # The order the modules stand in (each may import only those before it), spelled out so a
    # change that turns an arrow around is seen in review, not only when it closes a cycle.
    graph = import_graph(PACKAGE_DIR)
    # Django's request machinery (request, handler) sits below routing, which appends the
    # default consumers; the layer settings (asgi) hold a Router; channels look layers up by alias.
    order = ["exceptions", "headers", "signals", "outbox", "request", "handler", "default_consumers",
             "routing", "asgi", "channel", "message", "worker"]
    rank = {f"django_glue.{name}": index for index, name in enumerate(order)}
    upward = [
        f"{source} imports {target} (line {line})"
        for source, edges in graph.items() if source in rank
        for target, line in edges.items() if target in rank and rank[target] > rank[source]
    ]
    assert not upward, "imports against the layering: " + "; ".join(upward)


def test_the_packages_point_down() -> None:
    # asgi_ipc <- django_glue <- procman: django_glue runs procman's interface server only as a
    # subprocess (``python -m procman.interface``) and never imports procman; asgi_ipc imports
    # neither (what they share, such as the stop signals and the parent-death signal, lives in
    # asgi_ipc).
    import asgi_ipc

    checks = {"django_glue": (PACKAGE_DIR, ("procman",)),
              "asgi_ipc": (Path(asgi_ipc.__file__).resolve().parent, ("procman", "django_glue"))}
    upward = [
        f"{module} imports {target} (line {line})"
        for package, (directory, above) in checks.items()
        for module, names in imported_names(directory, package).items()
        for target, line in names.items() if target.split(".")[0] in above
    ]
    assert not upward, "imports against the package layering: " + "; ".join(upward)


def write_package(root: Path, files: dict[str, str]) -> Path:
    package = root / "pkg"
    for relative, text in files.items():
        path = package / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return package


def test_a_cycle_through_a_lazy_import_is_found(tmp_path: Path) -> None:
    package = write_package(tmp_path, {
        "__init__.py": "",
        "a.py": "from .b import thing\n",
        "b.py": "def thing():\n    from . import c\n",
        "sub/__init__.py": "",
        "c.py": """\
            from typing import TYPE_CHECKING
            if TYPE_CHECKING:
                from pkg.a import thing
        """,
    })
    graph = import_graph(package)
    assert graph["pkg.a"] == {"pkg.b": 1} and graph["pkg.b"] == {"pkg.c": 2}
    assert graph["pkg.c"] == {"pkg.a": 3}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]
    assert describe(["pkg.a", "pkg.b", "pkg.a"], {"pkg.a": {"pkg.b": 1}, "pkg.b": {"pkg.a": 4}}) == (
        "pkg.a (line 1) -> pkg.b (line 4) -> pkg.a"
    )


def test_an_acyclic_package_passes(tmp_path: Path) -> None:
    package = write_package(tmp_path, {
        "__init__.py": "",
        "low.py": "import os\n",
        "mid.py": "from . import low\nfrom .low import os\n",
        "top.py": "import pkg.mid\nfrom pkg import low\nfrom .sub.leaf import x\n",
        "sub/__init__.py": "from ..low import os\n",
        "sub/leaf.py": "from .. import mid\nx = 1\n",
    })
    graph = import_graph(package)
    assert graph["pkg.top"] == {"pkg.mid": 1, "pkg.low": 2, "pkg.sub.leaf": 3}
    assert graph["pkg.sub.leaf"] == {"pkg.mid": 1} and graph["pkg.sub"] == {"pkg.low": 1}
    assert find_cycle(graph) is None
