"""TLS on the sockets an interface process serves: ``--certfile``/``--keyfile``, re-read on SIGHUP.

Theory of operation
-------------------
:class:`TLSFiles` holds one OpenSSL context built from a certificate chain file and a private-key
file. Twisted's ``TLSMemoryBIOFactory`` asks it for a new ``SSL.Connection`` per accepted socket
(``serverConnectionForTLS``), so :meth:`TLSFiles.reload` - building a fresh context from the files
on disk and swapping it in only if that succeeds - changes the certificate for new connections
while open ones keep theirs: a renewed certificate needs no restart, and a broken renewal keeps the
old, working one (with an error in the log).

ALPN picks the first of the server's protocols (``h2``, ``http/1.1``: the connection factory's
``acceptableProtocols``) that the client offers; a client offering none of them is refused with
the ``no_application_protocol`` alert, a client offering no ALPN at all gets HTTP/1.1.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

from procman.interface.tls_context import server_context

__all__ = ["TLSFiles", "tls_factory"]

logger = logging.getLogger("procman.interface.tls")

@implementer(IOpenSSLServerConnectionCreator)
class TLSFiles:
    """A certificate and key loaded from files, reloadable while serving.

    :param certfile: PEM certificate chain (leaf first).
    :param keyfile: PEM private key; empty means the key is in ``certfile``.
    :param ciphers: an OpenSSL cipher list for TLS 1.2, or empty for OpenSSL's default.
    :param protocols: the ALPN protocol names the server speaks, preferred first.
    :raises ValueError: a file is missing, unreadable, not PEM, or the key does not match.
    """

    def __init__(
        self, certfile: str, keyfile: str = "", ciphers: str = "", protocols: Sequence[bytes] = (b"http/1.1",)
    ) -> None:
        self.certfile = certfile
        self.keyfile = keyfile or certfile
        self.ciphers = ciphers
        self.protocols = tuple(protocols)
        self._context = self._load()

    def _load(self) -> SSL.Context:
        return server_context(self.certfile, self.keyfile, self.ciphers, self.protocols)

    def reload(self) -> bool:
        """Re-read the files for new connections; on error keep the current ones and log why.

        :returns: True if the new files are in use.
        """
        try:
            self._context = self._load()
        except ValueError as exc:
            logger.error("TLS reload failed, still serving the previous certificate: %s", exc)
            return False
        logger.info("TLS certificate re-read from %s", self.certfile)
        return True

    def serverConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        """A connection for one accepted socket, using the context loaded last."""
        return SSL.Connection(self._context, None)


def tls_factory(tls: TLSFiles, factory: Any) -> TLSMemoryBIOFactory:
    """Wrap ``factory`` so its connections speak TLS with ``tls``'s certificate (server side)."""
    return TLSMemoryBIOFactory(tls, False, factory)
