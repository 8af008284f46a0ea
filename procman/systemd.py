"""The systemd protocols procman speaks: socket activation, ``sd_notify`` and unit files.

- Socket activation (sd_listen_fds(3)): when ``LISTEN_PID`` is our pid, fds 3 .. 3+``LISTEN_FDS``-1
  are listening sockets systemd bound for us.
- Readiness and watchdog (sd_notify(3)): datagrams ``READY=1``, ``STOPPING=1``, ``WATCHDOG=1`` and
  ``STATUS=...`` to ``NOTIFY_SOCKET`` (a path, or an abstract name starting with ``@``).
- :func:`render_units` writes a ``Type=notify`` service and a matching ``.socket`` unit. The
  directory layout (see docs/deploying.md): listening UNIX sockets such as ``/run/NAME/http.sock``
  belong to the ``.socket`` unit (``SocketUser``/``SocketGroup``/``SocketMode`` let the web server
  connect); the service's ``RuntimeDirectory=NAME/control`` (0700, removed on stop) holds only the
  control socket.
"""

from __future__ import annotations

import os
import re
import socket

__all__ = ["listen_fds", "notify", "watchdog_interval", "render_units", "listen_stream", "control_dir", "quote",
           "LISTEN_FDS_START", "CONTROL_SUBDIR"]

LISTEN_FDS_START = 3


def listen_fds(unset_environment: bool = True) -> list[int]:
    """Return the file descriptors systemd passed to this process (empty when none).

    :param unset_environment: remove ``LISTEN_PID``/``LISTEN_FDS``/``LISTEN_FDNAMES`` so children do
        not believe the fds are meant for them.
    """
    pid, count = os.environ.get("LISTEN_PID", ""), os.environ.get("LISTEN_FDS", "")
    if unset_environment:
        for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            os.environ.pop(key, None)
    if not pid.isdigit() or int(pid) != os.getpid() or not count.isdigit():
        return []
    return list(range(LISTEN_FDS_START, LISTEN_FDS_START + int(count)))


def notify(state: str) -> bool:
    """Send ``state`` (e.g. ``"READY=1"``) to systemd. Returns False when not run by systemd
    (no ``NOTIFY_SOCKET``) or when the datagram could not be sent."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode(), address)
    except OSError:
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between ``WATCHDOG=1`` pings systemd expects (half of ``WatchdogSec``), or None."""
    usec, pid = os.environ.get("WATCHDOG_USEC", ""), os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec) / 2e6


#: Where the exported service keeps its control socket, below ``/run``: its ``RuntimeDirectory=``
#: (mode 0700, owned by ``User=``, removed when the service stops). Listening UNIX sockets belong
#: to the ``.socket`` unit and must live outside it (e.g. ``/run/NAME/http.sock``).
CONTROL_SUBDIR = "control"

_PLAIN = re.compile(r"^[A-Za-z0-9_@%+=:,./-]+$")


def quote(arg: str) -> str:
    """Quote one word for a unit file's ``ExecStart=``/``Environment=`` (systemd.syntax(7)):
    ``%`` specifiers and ``$`` expansion are escaped, anything else unusual is double-quoted."""
    arg = arg.replace("%", "%%").replace("$", "$$")
    if arg and _PLAIN.match(arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def control_dir(name: str) -> str:
    """The control-socket directory of the exported service ``name`` (``PROCMAN_CONTROL_DIR``)."""
    return f"/run/{name}/{CONTROL_SUBDIR}"


def listen_stream(spec: str, name: str) -> str:
    """The ``ListenStream=`` value for a ``--bind`` spec (``127.0.0.1:8000``, ``[::1]:8000``,
    ``/run/site/http.sock``).

    :raises ValueError: the spec cannot be a systemd socket (port 0, ``fd://``, a UNIX socket inside
        the service's ``RuntimeDirectory``), with what to use instead.
    """
    from .sockets import BindError, parse_bind

    try:
        kind, address = parse_bind(spec)
    except BindError as exc:
        raise ValueError(str(exc)) from None
    if kind == "fd":
        raise ValueError(f"--bind {spec!r}: a systemd unit cannot inherit fd://; systemd binds the sockets "
                         "itself: give HOST:PORT or unix:/PATH")
    if kind == "unix":
        path = str(address)
        if path == control_dir(name) or path.startswith(control_dir(name) + "/"):
            raise ValueError(f"--bind {spec!r}: {control_dir(name)} is the service's RuntimeDirectory (mode 0700, "
                             f"removed at every stop); put the socket beside it, e.g. unix:/run/{name}/http.sock")
        return path
    host, port = address  # type: ignore[misc]
    if port == 0:
        raise ValueError(f"--bind {spec!r}: systemd needs a fixed port, not 0")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def render_units(
    name: str,
    exec_start: list[str],
    listen: list[str],
    working_directory: str,
    user: str | None = None,
    environment: dict[str, str] | None = None,
    watchdog_seconds: int = 30,
    socket_user: str | None = None,
    socket_group: str | None = None,
    socket_mode: str = "0660",
    reload_command: list[str] | None = None,
) -> tuple[str, str]:
    """Return ``(service_text, socket_text)`` for a ``name.service``/``name.socket`` pair.

    :param exec_start: the command systemd runs (absolute program path first).
    :param listen: ``--bind`` specs; see :func:`listen_stream`.
    :param watchdog_seconds: ``WatchdogSec=``; the supervisor pings at half that interval.
    :param socket_user: ``SocketUser=`` of UNIX sockets (default ``user``); with
        ``socket_group`` (the web server's group) and ``socket_mode`` they let nginx connect.
    :param reload_command: ``ExecReload=``; default: send HUP to the supervisor and return. The
        exporter gives ``procman reload --wait``, so ``systemctl reload`` returns once the new
        workers serve and fails if they cannot boot.
    :raises ValueError: on an empty name, command or listen list, or a listen spec systemd cannot
        bind, or a bad mode.
    """
    if not name or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"unit name {name!r} must be non-empty, letters, digits, '_', '.' or '-' only")
    if not exec_start or not os.path.isabs(exec_start[0]):
        raise ValueError("exec_start must start with an absolute program path")
    if not listen:
        raise ValueError("at least one listen address is needed for the .socket unit")
    if not re.fullmatch(r"0?[0-7]{3}", socket_mode):
        raise ValueError(f"--socket-mode {socket_mode!r} must be an octal mode such as 0660")
    streams = [listen_stream(spec, name) for spec in listen]
    env = {**(environment or {}), "PROCMAN_CONTROL_DIR": control_dir(name)}
    env_lines = "".join(f"Environment={quote(f'{key}={value}')}\n" for key, value in sorted(env.items()))
    user_line = f"User={user}\n" if user else ""
    reload_line = " ".join(quote(arg) for arg in reload_command) if reload_command else "/bin/kill -HUP $MAINPID"
    service = (
        "[Unit]\n"
        f"Description={name} (asgi_ipc site run by procman)\n"
        f"Requires={name}.socket\n"
        f"After=network.target {name}.socket\n"
        "\n"
        "[Service]\n"
        "Type=notify\n"
        "NotifyAccess=main\n"
        f"{user_line}"
        f"WorkingDirectory={working_directory.replace('%', '%%')}\n"
        f"{env_lines}"
        f"ExecStart={' '.join(quote(arg) for arg in exec_start)}\n"
        f"ExecReload={reload_line}\n"
        "KillMode=mixed\n"
        "TimeoutStopSec=40\n"
        f"WatchdogSec={int(watchdog_seconds)}\n"
        "Restart=on-failure\n"
        "RestartPreventExitStatus=2 3\n"
        "# The layer lives in /dev/shm. logind's RemoveIPC= deletes a *regular* user's segments\n"
        "# when that user logs out: run the site as a system user (uid below 1000).\n"
        f"# The control socket lives here: PROCMAN_CONTROL_DIR={control_dir(name)} procman status\n"
        f"# (0700, removed on stop); listening UNIX sockets belong to {name}.socket, outside it.\n"
        f"RuntimeDirectory={name}/{CONTROL_SUBDIR}\n"
        "RuntimeDirectoryMode=0700\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )
    listen_lines = "".join(f"ListenStream={stream}\n" for stream in streams)
    unix_lines = ""
    if any(stream.startswith("/") for stream in streams):
        owner = socket_user or user
        unix_lines = (
            "# UNIX sockets: owned by the site's user, group of the web server, so nginx can connect.\n"
            + (f"SocketUser={owner}\n" if owner else "")
            + (f"SocketGroup={socket_group}\n" if socket_group else "")
            + f"SocketMode={socket_mode}\n"
            + "DirectoryMode=0755\n"
        )
    sock = (
        "[Unit]\n"
        f"Description={name} listening sockets\n"
        "\n"
        "[Socket]\n"
        f"{listen_lines}"
        f"{unix_lines}"
        "Backlog=2048\n"
        "ReusePort=false\n"
        "\n"
        "[Install]\n"
        "WantedBy=sockets.target\n"
    )
    return service, sock
