"""Packages an interface process keeps out because nothing it runs uses them (issue 16: memory).

Twisted's reactor imports pyOpenSSL, ``cryptography`` and ``service_identity`` whenever they are
installed (``twisted.internet.tcp``, ``posixbase`` and ``endpoints`` try them for ``startTLS`` and
``ssl:`` endpoints): about 5 MiB that a plain-HTTP process never uses. Autobahn's WebSocket module
likewise imports ``cbor2`` (for WAMP's FlatBuffers messages) and ``click`` (to colour its debug
log lines): about 2 MiB more. Each of those imports is guarded by ``except ImportError``, and
Python refuses an import whose ``sys.modules`` entry is None, so :func:`refuse_imports` - called
before anything imports ``twisted.internet.reactor`` or Autobahn - makes Twisted and Autobahn run
exactly as on a machine without those packages.

TLS is kept out only when a process cannot need it (:func:`needs_tls`): no ``--certfile`` and
every endpoint string a plain ``tcp:``, ``tcp6:`` or ``unix:`` one (any other kind, ``ssl:`` or a
plugin's, may need OpenSSL).
"""

from __future__ import annotations

import sys
from typing import Iterable

__all__ = [
    "AUTOBAHN_EXTRAS",
    "PLAIN_ENDPOINT_KINDS",
    "TLS_MODULES",
    "endpoint_kind",
    "needs_tls",
    "refuse_imports",
]

#: Endpoint types that never speak TLS themselves.
PLAIN_ENDPOINT_KINDS = frozenset({"tcp", "tcp6", "unix"})
#: The top-level packages Twisted loads for TLS (``cryptography`` comes only through these).
TLS_MODULES = ("OpenSSL", "service_identity")
#: Autobahn's optional imports that only WAMP and coloured debug logs use.
AUTOBAHN_EXTRAS = ("cbor2", "click")


def endpoint_kind(description: str) -> str:
    """The endpoint type of a Twisted endpoint string (``tcp``, ``ssl``, ``unix``...)."""
    return description.split(":", 1)[0].lower()


def needs_tls(certfile: str | None, endpoints: Iterable[str]) -> bool:
    """Whether a process with this ``--certfile`` and these endpoint strings may use OpenSSL."""
    return bool(certfile) or any(endpoint_kind(text) not in PLAIN_ENDPOINT_KINDS for text in endpoints)


def refuse_imports(names: Iterable[str]) -> bool:
    """Make later imports of the top-level packages ``names`` raise ImportError; returns whether
    it did.

    All or nothing: when one of them is already imported (say, by the settings module), none is
    refused - the memory is spent, and code holding it must keep working.
    """
    names = tuple(names)
    if any(sys.modules.get(name) is not None for name in names):
        return False
    for name in names:
        sys.modules[name] = None  # type: ignore[assignment] - the import system's "not available"
    return True
