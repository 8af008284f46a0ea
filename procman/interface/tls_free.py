"""Keep OpenSSL out of an interface process that serves no TLS.

Twisted's reactor imports pyOpenSSL, ``cryptography`` and ``service_identity`` whenever they are
installed (``twisted.internet.tcp``, ``posixbase`` and ``endpoints`` try them for ``startTLS`` and
``ssl:`` endpoints), which costs an interface process about 5 MiB that a plain-HTTP site never
uses. Each of those imports is guarded by ``except ImportError``, and Python refuses an import
whose ``sys.modules`` entry is None, so :func:`refuse_tls_imports` - called before anything imports
``twisted.internet.reactor`` - makes Twisted run exactly as on a machine without pyOpenSSL.

Only a process that cannot need TLS does this: no ``--certfile`` and every endpoint string a plain
``tcp:``, ``tcp6:`` or ``unix:`` one (any other kind, ``ssl:`` or a plugin's, may need OpenSSL).
"""

from __future__ import annotations

import sys
from typing import Iterable

__all__ = ["PLAIN_ENDPOINT_KINDS", "TLS_MODULES", "endpoint_kind", "needs_tls", "refuse_tls_imports"]

#: Endpoint types that never speak TLS themselves.
PLAIN_ENDPOINT_KINDS = frozenset({"tcp", "tcp6", "unix"})
#: The top-level packages Twisted loads for TLS (``cryptography`` comes only through these).
TLS_MODULES = ("OpenSSL", "service_identity")


def endpoint_kind(description: str) -> str:
    """The endpoint type of a Twisted endpoint string (``tcp``, ``ssl``, ``unix``...)."""
    return description.split(":", 1)[0].lower()


def needs_tls(certfile: str | None, endpoints: Iterable[str]) -> bool:
    """Whether a process with this ``--certfile`` and these endpoint strings may use OpenSSL."""
    return bool(certfile) or any(endpoint_kind(text) not in PLAIN_ENDPOINT_KINDS for text in endpoints)


def refuse_tls_imports() -> bool:
    """Make later imports of :data:`TLS_MODULES` raise ImportError; returns whether it did.

    Does nothing (returns False) when one of them is already imported: the memory is spent, and
    code holding it must keep working. Call it before ``twisted.internet.reactor`` is imported.
    """
    if any(sys.modules.get(name) is not None for name in TLS_MODULES):
        return False
    for name in TLS_MODULES:
        sys.modules[name] = None  # type: ignore[assignment] - the import system's "not available"
    return True
