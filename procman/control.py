"""The control socket: how ``procman status|reload|stop`` talk to a running supervisor.

A UNIX stream socket in a directory only the owner can enter (mode 0700), the socket itself mode
0600, and every connection's peer credentials (``SO_PEERCRED``) checked against our uid: only the
user running the site (or root) gets an answer. One JSON object per line each way:

request  ``{"command": "status"}`` / ``{"command": "reload"}`` / ``{"command": "stop", "fast": false}``
response ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``

Where the socket lives: ``$PROCMAN_CONTROL_DIR`` if set (the exported systemd unit sets it to
``/run/<unit>``), else ``$XDG_RUNTIME_DIR/procman``, else ``/tmp/procman-<uid>``; the file is
``<site name>.sock`` (the site name is the layer prefix).
"""

from __future__ import annotations

import json
import os
import socket
import stat
import struct
from pathlib import Path
from typing import Any, Callable

__all__ = ["ControlError", "ControlServer", "runtime_dir", "socket_path", "list_sockets", "is_live", "request"]

_MAX_REQUEST = 64 * 1024


class ControlError(Exception):
    """The control socket could not be created, reached or understood."""


def runtime_dir(create: bool = False) -> Path:
    """The directory holding control sockets for this user.

    :param create: create it (mode 0700) if missing.
    :raises ControlError: it exists but is not a directory owned by us with mode 0700.
    """
    if os.environ.get("PROCMAN_CONTROL_DIR"):
        base = Path(os.environ["PROCMAN_CONTROL_DIR"])
    elif os.environ.get("XDG_RUNTIME_DIR") and os.path.isdir(os.environ["XDG_RUNTIME_DIR"]):
        base = Path(os.environ["XDG_RUNTIME_DIR"]) / "procman"
    else:
        base = Path(f"/tmp/procman-{os.geteuid()}")
    if create:
        try:
            base.mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise ControlError(f"cannot create control directory {base}: {exc.strerror}") from None
    if base.exists():
        info = base.lstat()
        owner_ok = info.st_uid == os.geteuid() or os.geteuid() == 0  # root may inspect any site
        if not stat.S_ISDIR(info.st_mode) or not owner_ok or info.st_mode & 0o077:
            raise ControlError(
                f"control directory {base} must be a directory owned by uid {os.geteuid()} with mode "
                f"0700 (found uid {info.st_uid}, mode {oct(info.st_mode & 0o777)}); remove it and retry"
            )
    return base


#: The longest path a UNIX socket address holds on Linux (sun_path is 108 bytes, NUL-terminated).
UNIX_PATH_MAX = 107


def _too_long(path: Path) -> str:
    """What to do when ``path`` does not fit a UNIX socket address ("" when it fits)."""
    size = len(os.fsencode(str(path)))
    if size <= UNIX_PATH_MAX:
        return ""
    return (f" (the path is {size} bytes; a UNIX socket path may have at most {UNIX_PATH_MAX}: set "
            "PROCMAN_CONTROL_DIR to a shorter directory, or give the site a shorter name/prefix)")


def socket_path(name: str) -> Path:
    """The control socket path for site ``name``."""
    return runtime_dir() / f"{name}.sock"


def list_sockets() -> list[Path]:
    """Control sockets present for this user (some may be stale)."""
    base = runtime_dir()
    if not base.is_dir():
        return []
    return sorted(p for p in base.iterdir() if p.suffix == ".sock")


class ControlServer:
    """Listening end, polled by the supervisor's main loop (it never blocks the loop for long).

    :param path: where to create the socket; a stale file is replaced, a live one is an error.
    :param answer: called with the decoded request dict, returns the response dict.
    """

    def __init__(self, path: Path, answer: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.path = Path(path)
        self.answer = answer
        if not self.path.parent.exists():
            if self.path.parent == runtime_dir():
                runtime_dir(create=True)
            else:
                self.path.parent.mkdir(mode=0o700, parents=True)
        if self.path.exists() or self.path.is_symlink():
            if is_live(self.path):
                raise ControlError(
                    f"another procman is already running with control socket {self.path} "
                    f"(same site name / layer prefix); stop it, or give this site another prefix"
                )
            self.path.unlink()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old_umask = os.umask(0o177)
        try:
            self.sock.bind(str(self.path))
        except OSError as exc:
            self.sock.close()
            raise ControlError(f"cannot create control socket {self.path}: {exc.strerror or exc}{_too_long(self.path)}") from None
        finally:
            os.umask(old_umask)
        self.sock.listen(16)
        self.sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def serve_one(self) -> None:
        """Accept one pending connection (if any) and answer it; bounded by a 2 s socket timeout."""
        try:
            conn, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        with conn:
            conn.settimeout(2.0)
            try:
                creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
                _pid, uid, _gid = struct.unpack("3i", creds)
                data = _read_line(conn)  # read first, so the refusal below reaches the client
                if uid not in (os.geteuid(), 0):
                    _send(conn, {"ok": False, "error": "permission denied: not the site's owner"})
                    return
                try:
                    req = json.loads(data)
                    if not isinstance(req, dict) or not isinstance(req.get("command"), str):
                        raise ValueError("expected a JSON object with a 'command' string")
                except ValueError as exc:
                    _send(conn, {"ok": False, "error": f"bad request: {exc}"})
                    return
                try:
                    response = self.answer(req)
                except Exception as exc:  # a bug in one answer must not kill the supervisor
                    response = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                _send(conn, response)
            except OSError:
                return

    def close(self) -> None:
        """Close and remove the socket file."""
        self.sock.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


def is_live(path: Path) -> bool:
    """True if a supervisor accepts connections on the control socket ``path``."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def _read_line(conn: socket.socket) -> bytes:
    data = b""
    while b"\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > _MAX_REQUEST:
            raise ControlError("message too large")
    return data.split(b"\n", 1)[0]


def _send(conn: socket.socket, obj: dict[str, Any]) -> None:
    conn.sendall(json.dumps(obj, default=str).encode() + b"\n")


def request(path: Path, command: str, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
    """Send one command to the supervisor at ``path`` and return its response.

    :raises ControlError: no supervisor there (with advice), or it did not answer in time.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(str(path))
        except FileNotFoundError:
            raise ControlError(f"no running procman: {path} does not exist") from None
        except ConnectionRefusedError:
            raise ControlError(f"no running procman behind {path} (stale socket file)") from None
        except PermissionError:
            raise ControlError(f"permission denied on {path}: run as the user who started the site") from None
        _send(sock, {"command": command, **fields})
        try:
            data = _read_line(sock)
        except socket.timeout:
            raise ControlError(f"the supervisor at {path} did not answer within {timeout:g} s") from None
    finally:
        sock.close()
    if not data:
        raise ControlError(f"the supervisor at {path} closed the connection without answering")
    try:
        return json.loads(data)
    except ValueError:
        raise ControlError(f"the supervisor at {path} sent an unreadable answer") from None
