"""Checks of the sockets an interface process is told to serve that need neither Twisted nor the
channel layer: ``cli.main`` runs them first, so a misconfigured start fails at once with the
message the server itself gives (:meth:`InterfaceServer.adopt` uses :func:`inherited_socket`, and
so does the supervisor for the sockets systemd or ``--bind fd://N`` hands it: one rule for "an
inherited listening socket").
"""

from __future__ import annotations

import ipaddress
import socket

__all__ = ["check_tcp_address", "inherited_socket"]


def inherited_socket(fd: int, nonblocking: bool = False, label: str | None = None) -> socket.AddressFamily:
    """The address family of the inherited listening socket ``fd`` (which stays open, not owned).

    :param nonblocking: also put it in non-blocking mode, as Twisted requires (the flag lives on
        the shared open file: the process that passed it must not ``accept()`` itself).
    :param label: how the errors name the socket (default ``--fd N``).
    :raises ValueError: ``fd`` is not an open socket, or not a listening stream socket.
    """
    label = label or f"--fd {fd}"
    try:
        probe = socket.socket(fileno=fd)
    except OSError as exc:
        raise ValueError(f"{label}: not an open socket ({exc.strerror})") from exc
    try:
        family = probe.family
        listening = probe.type == socket.SOCK_STREAM and probe.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        if listening and nonblocking:
            probe.setblocking(False)
    finally:
        probe.detach()
    if not listening:
        raise ValueError(f"{label}: the socket is not listening (pass a stream socket after listen())")
    return family


def check_tcp_address(host: str, port: int) -> None:
    """Raise if ``host:port`` cannot be bound now (taken, or not an address of this machine).

    Binds and closes a probe socket with ``SO_REUSEADDR``, as Twisted's port does (a port in
    ``TIME_WAIT`` is no obstacle). Port 0 and host names are left to the real listen.

    :raises ValueError: worded as Twisted's ``CannotListenError``.
    """
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        return
    if port == 0:
        return
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ValueError(f"Couldn't listen on {host}:{port}: {exc}.") from exc
