"""procman/interface imports one way only, and nothing of procman outside itself.

The interface server lives under ``procman/`` but must stand alone (issue 12): the protocols
depend on the small interfaces in ``context.py`` that the server implements, never on the server
module, so the graph read from the source (every import, lazy and ``TYPE_CHECKING`` ones
included; see ``tests/import_graph.py``) is acyclic.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import procman.interface
from tests.import_graph import describe, find_cycle, import_graph, imported_names

PACKAGE = "procman.interface"
PACKAGE_DIR = Path(procman.interface.__file__).resolve().parent


def test_procman_interface_has_no_import_cycle() -> None:
    graph = import_graph(PACKAGE_DIR, PACKAGE)
    # The graph was read (absolute imports resolved to the package's modules).
    assert "procman.interface.http_protocol" in graph["procman.interface.server"], graph
    cycle = find_cycle(graph)
    assert cycle is None, (
        "import cycle in procman/interface: " + describe(cycle, graph)
        + "; protocols talk to the server through procman/interface/context.py, not its module"
    )


def test_the_protocols_do_not_know_the_server() -> None:
    graph = import_graph(PACKAGE_DIR, PACKAGE)
    upward = [
        f"{source} imports {target} (line {line})"
        for name in ("http_protocol", "http2_protocol", "http_exchange", "ws_protocol", "context")
        for source in [f"{PACKAGE}.{name}"]
        for target, line in graph[source].items()
        if target in (f"{PACKAGE}.server", f"{PACKAGE}.cli", PACKAGE)
    ]
    assert not upward, "protocols importing the server: " + "; ".join(upward)


def test_nothing_of_procman_outside_the_interface_is_imported() -> None:
    names = imported_names(PACKAGE_DIR, PACKAGE)
    assert "procman.interface.options.ServerOptions" in names["procman.interface.server"], names
    outside = [
        f"{module} imports {target} (line {line})"
        for module, targets in names.items()
        for target, line in targets.items()
        if (target == "procman" or target.startswith("procman."))
        and not (target == PACKAGE or target.startswith(PACKAGE + "."))
    ]
    assert not outside, (
        "procman/interface must stand alone (it runs without the supervisor): " + "; ".join(outside)
    )


def test_imported_names_resolves_every_form(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from .. import low\n")
    (package / "low.py").write_text(textwrap.dedent("""\
        import os.path, json
        from other.place import thing
        def late():
            from .sub import leaf
    """))
    names = imported_names(package, "top.pkg")
    assert names["top.pkg.low"] == {
        "os.path": 1, "json": 1, "other.place.thing": 2, "top.pkg.sub.leaf": 4,
    }
    assert names["top.pkg.sub"] == {"top.pkg.low": 1}
    graph = import_graph(package, "top.pkg")
    assert graph["top.pkg.sub"] == {"top.pkg.low": 1} and graph["top.pkg.low"] == {"top.pkg.sub": 4}


def _members(protocol: type) -> set[str]:
    """The attributes and methods a typing ``Protocol`` class declares."""
    declared = set(getattr(protocol, "__annotations__", {}))
    declared |= {name for name, value in vars(protocol).items() if callable(value) and not name.startswith("_")}
    return declared


def test_the_server_and_the_connections_offer_what_context_declares(layer) -> None:
    from twisted.internet.testing import MemoryReactorClock

    from procman.interface.context import ExchangeConnection, ServerContext
    from procman.interface.http2_protocol import HTTP2Connection, _Stream
    from procman.interface.http_protocol import HTTPConnection
    from procman.interface.server import InterfaceServer

    server = InterfaceServer(layer, reactor=MemoryReactorClock())
    assert {"options", "send", "register", "websocket_factory"} <= _members(ServerContext)
    assert [name for name in sorted(_members(ServerContext)) if not hasattr(server, name)] == []
    assert {"write", "error_response", "client"} <= _members(ExchangeConnection)
    for offered in (HTTPConnection(server), _Stream(HTTP2Connection(server, None), 1)):
        missing = [name for name in sorted(_members(ExchangeConnection)) if not hasattr(offered, name)]
        assert missing == [], f"{type(offered).__name__} lacks {missing}"
