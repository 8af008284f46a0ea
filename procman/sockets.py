"""Listening sockets: bound once by the supervisor and inherited by every interface process.

Binding in the supervisor (rather than ``SO_REUSEPORT`` per child) means one accept queue that
never closes while children restart or reload, so no queued connection is ever reset.

Bind specifications (``--bind``, repeatable):

``HOST:PORT``  / ``[V6HOST]:PORT`` / ``:PORT`` / ``PORT``   TCP (empty host means 127.0.0.1)
``unix:/path/to/socket``                                    UNIX stream socket (mode 0660)
``fd://N``                                                  an already listening inherited fd
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import tempfile
from dataclasses import dataclass

from . import systemd

__all__ = ["BindError", "Listener", "parse_bind", "bind", "adopt_fd", "adopt_systemd", "close_all"]

DEFAULT_BIND = "127.0.0.1:8000"
#: Mode of the UNIX socket files procman creates (owner and group may connect).
UNIX_SOCKET_MODE = 0o660


class BindError(Exception):
    """A listening socket could not be created; the message says which and what to do."""


@dataclass
class Listener:
    """A bound, listening socket and how to show it to people.

    :ivar spec: what the user asked for (``127.0.0.1:8000``, ``unix:/run/x.sock``, ``fd://3``).
    :ivar owned_path: a UNIX socket path this process created and must unlink at the end.
    """

    sock: socket.socket
    spec: str
    owned_path: str | None = None
    private_path: str | None = None

    def restore_mode(self) -> bool:
        """Put a UNIX socket file this process created back to mode 0660 if a child changed it
        (Twisted makes adopted UNIX sockets world-writable). Returns True if it had to."""
        if not self.owned_path:
            return False
        try:
            if stat.S_IMODE(os.stat(self.owned_path).st_mode) != UNIX_SOCKET_MODE:
                os.chmod(self.owned_path, UNIX_SOCKET_MODE)
                return True
        except FileNotFoundError:
            pass
        return False

    def fileno(self) -> int:
        return self.sock.fileno()

    @property
    def url(self) -> str:
        """Where a browser (or curl) reaches this socket."""
        if self.sock.family == socket.AF_UNIX:
            return f"http+unix://{self.owned_path or self.sock.getsockname() or self.spec}"
        host, port = self.sock.getsockname()[:2]
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}/"


def parse_bind(spec: str) -> tuple[str, object]:
    """Parse a bind specification into ``(kind, address)``.

    ``kind`` is ``"tcp"`` (address ``(host, port)``), ``"unix"`` (address a path) or ``"fd"``
    (address an int).

    :raises BindError: the specification is malformed (the message shows the accepted forms).
    """
    text = spec.strip()
    forms = "use HOST:PORT, [IPV6]:PORT, :PORT, PORT, unix:/path or fd://N"
    if text.startswith("unix:"):
        path = text[len("unix:") :]
        if not path:
            raise BindError(f"--bind {spec!r}: missing path after 'unix:'; {forms}")
        return "unix", os.path.abspath(path)
    if text.startswith("fd://"):
        number = text[len("fd://") :]
        if not number.isdigit():
            raise BindError(f"--bind {spec!r}: fd:// needs a number; {forms}")
        return "fd", int(number)
    if text.isdigit():
        host, port_text = "127.0.0.1", text
    elif text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise BindError(f"--bind {spec!r}: IPv6 addresses need brackets and a port; {forms}")
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or ":" in host:
            raise BindError(f"--bind {spec!r}: expected HOST:PORT; {forms}")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise BindError(f"--bind {spec!r}: port must be a number from 0 to 65535; {forms}")
    return "tcp", (host or "127.0.0.1", int(port_text))


def bind(spec: str, backlog: int = 2048) -> Listener:
    """Create a listening socket for ``spec``; its fd is inheritable (survives exec in children).

    A stale UNIX socket file (nobody accepting on it) is replaced; a live one is an error.

    :raises BindError: malformed spec, address in use, permission denied, unknown host.
    """
    kind, address = parse_bind(spec)
    if kind == "fd":
        return adopt_fd(int(address), spec)  # type: ignore[arg-type]
    if kind == "unix":
        return _bind_unix(spec, str(address), backlog)
    host, port = address  # type: ignore[misc]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise BindError(f"--bind {spec!r}: cannot resolve host {host!r}: {exc.strerror}") from None
    family, socktype, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, socktype, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise BindError(
                f"cannot listen on {host}:{port}: address already in use. Another server (or another "
                f"procman) is running there; stop it or choose another address with --bind"
            ) from None
        if exc.errno == errno.EACCES:
            raise BindError(
                f"cannot listen on {host}:{port}: permission denied (ports below 1024 need root or "
                f"CAP_NET_BIND_SERVICE; use systemd socket activation or a port >= 1024)"
            ) from None
        raise BindError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return _shareable(Listener(sock, spec))


def _bind_unix(spec: str, path: str, backlog: int) -> Listener:
    if os.path.lexists(path):
        mode = os.lstat(path).st_mode
        if not stat.S_ISSOCK(mode):
            raise BindError(f"--bind {spec!r}: {path} exists and is not a socket; remove it or pick another path")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # stale: left by a server that died
        else:
            raise BindError(f"--bind {spec!r}: a server is already accepting on {path}; stop it first")
        finally:
            probe.close()
    # The socket is bound under a private name (in a 0700 directory) and the public path is a hard
    # link to it. A child that adopts the fd sees only the private name (getsockname), so when it
    # stops and "cleans up" its listening socket (Twisted unlinks it), the public path survives.
    try:
        private_dir = tempfile.mkdtemp(prefix=".procman-", dir=os.path.dirname(path))
    except OSError as exc:
        raise BindError(f"--bind {spec!r}: cannot create a socket in {os.path.dirname(path)}: {exc.strerror}") from None
    private = os.path.join(private_dir, "listen.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old_umask = os.umask(0o117)
        try:
            sock.bind(private)
        finally:
            os.umask(old_umask)
        sock.listen(backlog)
        os.link(private, path)
    except OSError as exc:
        sock.close()
        _remove_private(private)
        raise BindError(f"--bind {spec!r}: cannot listen on {path}: {exc.strerror}") from None
    return _shareable(Listener(sock, spec, owned_path=path, private_path=private))


def _remove_private(private: str) -> None:
    try:
        os.unlink(private)
    except FileNotFoundError:
        pass
    try:
        os.rmdir(os.path.dirname(private))
    except OSError:
        pass


def adopt_fd(fd: int, spec: str | None = None) -> Listener:
    """Wrap an inherited listening socket (systemd, ``fd://N``).

    :raises BindError: ``fd`` is not an open listening stream socket.
    """
    from .interface.listen_checks import inherited_socket

    label = spec or f"fd://{fd}"
    try:
        inherited_socket(fd, label=f"{label} (file descriptor {fd})")
    except ValueError as exc:
        raise BindError(str(exc)) from None
    return _shareable(Listener(socket.socket(fileno=fd), label))


def _shareable(listener: Listener) -> Listener:
    """Inheritable by children, and non-blocking: O_NONBLOCK belongs to the open file shared by
    every process, and an event loop that accepts on a blocking socket freezes in ``accept()``
    as soon as another process took the pending connection."""
    listener.sock.set_inheritable(True)
    listener.sock.setblocking(False)
    return listener


def adopt_systemd() -> list[Listener]:
    """Listening sockets passed by systemd socket activation (``LISTEN_FDS``), possibly none."""
    return [adopt_fd(fd, f"systemd fd {fd}") for fd in systemd.listen_fds()]


def close_all(listeners: list[Listener]) -> None:
    """Close every listener and unlink the UNIX socket files this process created."""
    for listener in listeners:
        try:
            listener.sock.close()
        finally:
            if listener.owned_path:
                try:
                    os.unlink(listener.owned_path)
                except FileNotFoundError:
                    pass
            if listener.private_path:
                _remove_private(listener.private_path)
