"""``procman doctor``: check the machine and the project before (or while) running a site.

Each check yields a :class:`Finding` (``ok``, ``warn`` or ``fail``) with advice. ``--clean``
removes what can only be debris: segments whose creator is dead and which no process maps, and
control sockets nobody answers on. The exit code is 1 when any check failed, else 0.
"""

from __future__ import annotations

import glob
import json
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from . import control
from .status import human_bytes

__all__ = ["Finding", "check_shm", "check_segments", "check_ports", "check_settings", "check_remove_ipc",
           "check_control_sockets", "run_doctor"]

#: Below this much free space in /dev/shm a default-sized layer (32 MiB arena) may not fit.
SHM_WARN_BYTES = 64 * 2**20
#: ``--clean`` leaves segments younger than this alone (they may be in the middle of creation).
MIN_STALE_AGE = 10.0


@dataclass
class Finding:
    """One check's result: ``level`` is ok / warn / fail."""

    check: str
    level: str
    message: str


def check_shm(path: str = "/dev/shm") -> list[Finding]:
    """Size and free space of the shared-memory filesystem."""
    try:
        stats = os.statvfs(path)
    except OSError as exc:
        return [Finding("shm", "fail", f"{path} is not usable ({exc.strerror}); the layer needs POSIX shared memory")]
    size, free = stats.f_blocks * stats.f_frsize, stats.f_bavail * stats.f_frsize
    text = f"{path}: {human_bytes(size)} total, {human_bytes(free)} free"
    if free < SHM_WARN_BYTES:
        return [Finding("shm", "warn", f"{text}; a default layer needs about 40M per site. In Docker use "
                        "--shm-size=256m (compose: shm_size), or lower message_memory in CONFIG")]
    return [Finding("shm", "ok", text)]


def check_segments(clean: bool = False) -> list[Finding]:
    """Every ``asgi_ipc.*`` segment in /dev/shm: in use, orphaned or stale (removed by ``clean``)."""
    from asgi_ipc.segment import list_segments, remove

    findings = []
    for info in list_segments():
        label = f"{info.name} ({human_bytes(info.size)})"
        try:
            age = time.time() - os.stat(info.path).st_mtime
        except OSError:
            continue
        if info.stale and age < MIN_STALE_AGE:
            # A segment being created right now has no valid header yet and may not be mapped:
            # never mistake it for debris.
            findings.append(Finding("segments", "ok", f"{label}: just created ({age:.1f} s ago), left alone"))
        elif info.stale:
            if clean:
                try:
                    remove(info.name)
                    findings.append(Finding("segments", "ok", f"{label}: removed ({info.verdict()})"))
                except OSError as exc:
                    findings.append(Finding("segments", "fail", f"{label}: cannot remove: {exc}"))
            else:
                findings.append(Finding("segments", "warn", f"{label}: {info.verdict()}; "
                                        "`procman doctor --clean` removes it"))
        elif info.creator_alive:
            findings.append(Finding("segments", "ok", f"{label}: {info.verdict()}"))
        else:
            findings.append(Finding("segments", "warn", f"{label}: {info.verdict()}; stop those processes "
                                    "and run `procman doctor --clean`"))
    if not findings:
        findings.append(Finding("segments", "ok", "no asgi_ipc segments in /dev/shm"))
    return findings


def check_ports(specs: list[str]) -> list[Finding]:
    """Can each bind address be listened on right now?"""
    from .sockets import BindError, bind, close_all

    findings = []
    for spec in specs:
        try:
            listener = bind(spec)
        except BindError as exc:
            findings.append(Finding("ports", "fail", str(exc)))
            continue
        close_all([listener])
        findings.append(Finding("ports", "ok", f"{spec}: free"))
    return findings


def check_settings(settings: str | None, directory: Path) -> list[Finding]:
    """Does the project's settings module import, with a usable asgi_ipc layer entry?"""
    from .project import ProjectError, find_settings_module, load_project

    try:
        module = find_settings_module(settings, directory)
    except ProjectError as exc:
        return [Finding("settings", "warn", f"no project checked: {exc}")]
    try:
        project = load_project(module, directory)
    except ProjectError as exc:
        return [Finding("settings", "fail", str(exc).strip().splitlines()[0])]
    return [Finding("settings", "ok", f"{module} imports; layer prefix {project.prefix!r}")]


def _logind_remove_ipc(paths: list[str]) -> str:
    value = "yes"  # systemd's default
    for path in paths:
        try:
            text = Path(path).read_text()
        except OSError:
            continue
        for match in re.finditer(r"^\s*RemoveIPC\s*=\s*(\S+)", text, re.MULTILINE):
            value = match.group(1).lower()
    return value


def check_remove_ipc(uid: int | None = None, logind_paths: list[str] | None = None) -> list[Finding]:
    """systemd-logind removes a *regular* user's shared memory when that user logs out."""
    uid = os.geteuid() if uid is None else uid
    if logind_paths is None:
        logind_paths = ["/etc/systemd/logind.conf", *sorted(glob.glob("/etc/systemd/logind.conf.d/*.conf"))]
    if not os.path.isdir("/run/systemd/system") and logind_paths == []:
        return [Finding("systemd", "ok", "not running under systemd")]
    setting = _logind_remove_ipc(logind_paths)
    if uid < 1000 or setting in ("no", "false", "0", "off"):
        return [Finding("systemd", "ok", f"RemoveIPC={setting}, uid {uid}: segments survive logouts")]
    return [Finding("systemd", "warn", f"RemoveIPC={setting} and uid {uid} is a regular user: logging out "
                    "deletes the site's segment under it. Run the site as a system user (useradd --system) "
                    "or set RemoveIPC=no in /etc/systemd/logind.conf")]


def check_control_sockets(clean: bool = False) -> list[Finding]:
    """Control sockets of running sites; dead ones are removed by ``clean``."""
    findings = []
    try:
        sockets = control.list_sockets()
    except control.ControlError as exc:
        return [Finding("control", "fail", str(exc))]
    for path in sockets:
        if control.is_live(path):
            findings.append(Finding("control", "ok", f"site {path.stem!r} is running ({path})"))
        elif clean:
            path.unlink(missing_ok=True)
            findings.append(Finding("control", "ok", f"removed dead control socket {path}"))
        else:
            findings.append(Finding("control", "warn", f"dead control socket {path}; `--clean` removes it"))
    return findings


def run_doctor(settings: str | None, binds: list[str], clean: bool = False, as_json: bool = False,
               directory: Path | None = None) -> int:
    """Run every check, print the findings, return 1 if any failed else 0."""
    directory = directory or Path.cwd()
    findings = check_shm()
    findings += check_segments(clean)
    findings += check_control_sockets(clean)
    findings += check_settings(settings, directory)
    if not binds:
        from .config import ConfigError, resolve

        try:
            binds = resolve({}, directory).bind  # what `procman run` here would bind
        except ConfigError as exc:
            findings.append(Finding("config", "fail", str(exc)))
            binds = ["127.0.0.1:8000"]
    findings += check_ports(binds)
    findings += check_remove_ipc()
    if as_json:
        print(json.dumps([asdict(f) for f in findings], indent=2))
    else:
        marks = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
        for finding in findings:
            print(f"{marks[finding.level]} {finding.check:<9} {finding.message}")
    return 1 if any(f.level == "fail" for f in findings) else 0
