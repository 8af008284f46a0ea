"""The systemd protocols procman speaks: socket activation, ``sd_notify`` and unit files.

- Socket activation (sd_listen_fds(3)): when ``LISTEN_PID`` is our pid, fds 3 .. 3+``LISTEN_FDS``-1
  are listening sockets systemd bound for us.
- Readiness and watchdog (sd_notify(3)): datagrams ``READY=1``, ``STOPPING=1``, ``WATCHDOG=1`` and
  ``STATUS=...`` to ``NOTIFY_SOCKET`` (a path, or an abstract name starting with ``@``).
- :func:`render_units` writes a ``Type=notify`` service and a matching ``.socket`` unit.
"""

from __future__ import annotations

import os
import shlex
import socket

__all__ = ["listen_fds", "notify", "watchdog_interval", "render_units", "LISTEN_FDS_START"]

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


def render_units(
    name: str,
    exec_start: list[str],
    listen: list[str],
    working_directory: str,
    user: str | None = None,
    environment: dict[str, str] | None = None,
    watchdog_seconds: int = 30,
) -> tuple[str, str]:
    """Return ``(service_text, socket_text)`` for a ``name.service``/``name.socket`` pair.

    :param exec_start: the command systemd runs (absolute program path first).
    :param listen: ``ListenStream=`` values (``127.0.0.1:8000``, ``/run/site.sock``...).
    :param watchdog_seconds: ``WatchdogSec=``; the supervisor pings at half that interval.
    :raises ValueError: on an empty name, command or listen list.
    """
    if not name or "/" in name or any(c.isspace() for c in name):
        raise ValueError(f"unit name {name!r} must be non-empty, without spaces or '/'")
    if not exec_start or not os.path.isabs(exec_start[0]):
        raise ValueError("exec_start must start with an absolute program path")
    if not listen:
        raise ValueError("at least one listen address is needed for the .socket unit")
    env_lines = "".join(
        f"Environment={shlex.quote(f'{key}={value}')}\n" for key, value in sorted((environment or {}).items())
    )
    user_line = f"User={user}\n" if user else ""
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
        f"WorkingDirectory={working_directory}\n"
        f"{env_lines}"
        f"ExecStart={shlex.join(exec_start)}\n"
        "ExecReload=/bin/kill -HUP $MAINPID\n"
        "KillMode=mixed\n"
        "TimeoutStopSec=40\n"
        f"WatchdogSec={int(watchdog_seconds)}\n"
        "Restart=on-failure\n"
        "RestartPreventExitStatus=2 3\n"
        "# The layer lives in /dev/shm. logind's RemoveIPC= deletes a *regular* user's segments\n"
        "# when that user logs out: run the site as a system user (uid below 1000).\n"
        f"# Its control socket is here: PROCMAN_CONTROL_DIR=/run/{name} procman status\n"
        f"RuntimeDirectory={name}\n"
        "RuntimeDirectoryMode=0700\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )
    listen_lines = "".join(f"ListenStream={address}\n" for address in listen)
    sock = (
        "[Unit]\n"
        f"Description={name} listening sockets\n"
        "\n"
        "[Socket]\n"
        f"{listen_lines}"
        "Backlog=2048\n"
        "ReusePort=false\n"
        "\n"
        "[Install]\n"
        "WantedBy=sockets.target\n"
    )
    return service, sock
