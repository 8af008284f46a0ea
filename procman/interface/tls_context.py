"""The OpenSSL server context of ``--certfile``/``--keyfile``/``--ssl-ciphers``, with pyOpenSSL
alone (no Twisted): :mod:`procman.interface.tls` serves with it, and the command line builds one
before anything heavy is imported, so bad files stop a start at once (see ``cli.main``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from OpenSSL import SSL

__all__ = ["server_context"]

_ADVICE = (
    "--certfile must name a readable PEM file holding the certificate (then any intermediates), "
    "--keyfile the PEM private key that matches it"
)


def server_context(certfile: str, keyfile: str, ciphers: str, protocols: Sequence[bytes]) -> SSL.Context:
    """A TLS 1.2+ server context for the files, choosing among ``protocols`` by ALPN.

    :raises ValueError: naming the option, the file and what is wrong (missing, unreadable, not
        PEM, a key that does not match the certificate, a cipher list OpenSSL refuses).
    """
    for flag, path in (("--certfile", certfile), ("--keyfile", keyfile)):
        if not Path(path).is_file():
            raise ValueError(f"{flag} {path}: no such file; {_ADVICE}")
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)  # HTTP/2 requires TLS 1.2 or later
    context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE)
    context.set_session_id(b"procman-interface")
    steps = (
        ("--certfile", certfile, lambda: context.use_certificate_chain_file(certfile)),
        ("--keyfile", keyfile, lambda: context.use_privatekey_file(keyfile)),
        ("--keyfile", keyfile, context.check_privatekey),
    )
    for flag, path, step in steps:
        try:
            step()
        except (SSL.Error, OSError) as exc:
            raise ValueError(f"{flag} {path}: {type(exc).__name__}: {exc}; {_ADVICE}") from exc

    def select(connection: SSL.Connection, offered: list[bytes]) -> Any:
        for protocol in protocols:
            if protocol in offered:
                return protocol
        return SSL.NO_OVERLAPPING_PROTOCOLS

    context.set_alpn_select_callback(select)
    if ciphers:
        try:
            context.set_cipher_list(ciphers.encode("ascii"))
        except (SSL.Error, UnicodeEncodeError) as exc:
            raise ValueError(
                f"--ssl-ciphers {ciphers!r}: OpenSSL accepts none of these ciphers ({exc}); give an "
                "OpenSSL cipher list such as 'ECDHE+AESGCM:ECDHE+CHACHA20'"
            ) from exc
    return context
