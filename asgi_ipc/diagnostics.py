"""What is wrong with this machine for asgi_ipc, as plain data: the one home of the doctor rules.

Both doctors present these findings - ``asgi-ipc doctor`` (the layer alone) and ``procman doctor``
(the layer plus the site) - so a segment is judged stale, a ``/dev/shm`` too small and a user
exposed to ``RemoveIPC`` by the same rules everywhere:

- :func:`shm_space` and :func:`space_warnings`: size and free space of ``/dev/shm`` against what
  a default-sized segment needs (twice that during a restart).
- :func:`removeipc_warning`: systemd-logind deletes every shared-memory object of a *regular*
  user when their last session ends. Asked only where systemd runs (``/run/systemd/system``).
- :func:`survey`: every ``asgi_ipc.*`` segment, its state (in use / orphaned / stale / invalid),
  a consistency check of the ones in use, and with ``clean`` the removal of those nothing maps.
- :func:`fastpath_status`: whether the C fast path is built and in use in this process.

Nothing here prints; callers render the records.
"""

from __future__ import annotations

import glob
import os
import pwd
import time
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import posix_ipc

from . import segment as _segment
from .errors import SegmentError, SegmentMissing
from .layout import Layout, Sizes
from .native import fastpath
from .segment import SHM_DIR, SegmentInfo, inspect, list_segments

__all__ = [
    "CREATION_GRACE",
    "FastPathStatus",
    "default_segment_bytes",
    "environment_warnings",
    "fastpath_status",
    "human_size",
    "removeipc_warning",
    "shm_space",
    "space_warnings",
    "survey",
    "systemd_running",
    "user_name",
]

#: An invalid-looking segment changed this recently may be one a site is creating right now (its
#: header is written after the memory is reserved): ``clean`` leaves it alone until it is older.
CREATION_GRACE = 10.0


# ===== the C fast path ===========================================================================
@dataclass(frozen=True)
class FastPathStatus:
    """Whether layers created in this process use the C fast path, and why not if they do not."""

    active: bool
    reason: str


def fastpath_status() -> FastPathStatus:
    """Is ``asgi_ipc._fastpath`` built and allowed here? (``ASGI_IPC_PURE=1`` forbids it.)

    The rule :mod:`asgi_ipc.attachment` applies when it maps a segment (``native.fastpath``):
    built, not disabled with ``ASGI_IPC_PURE=1``, and built for this segment layout.
    """
    module, why = fastpath()
    return FastPathStatus(module is not None, why)


# ===== /dev/shm ==================================================================================
def default_segment_bytes() -> int:
    """Size of a segment made with the layer's default settings."""
    return Layout(Sizes.from_config(32 * 2**20, 4096, 4096, 32768, 256, 2**20)).total


def shm_space(path: str = SHM_DIR) -> dict[str, int]:
    """``{"total_bytes": ..., "free_bytes": ...}`` of the filesystem at ``path``.

    :raises OSError: ``path`` cannot be examined.
    """
    st = os.statvfs(path)
    return {"total_bytes": st.f_blocks * st.f_frsize, "free_bytes": st.f_bavail * st.f_frsize}


def space_warnings(total: int, free: int, need: int) -> list[str]:
    """Warnings about a shared-memory filesystem of ``total`` bytes with ``free`` left, for
    segments of about ``need`` bytes (pure; ``doctor`` feeds it ``statvfs``)."""
    out = []
    if total < 2 * need:
        out.append(
            f"{SHM_DIR} is only {human_size(total)}; a site with default settings needs "
            f"{human_size(need)} and a restart briefly needs twice that. Enlarge it (Docker: "
            "--shm-size=256m; otherwise: mount -o remount,size=512m /dev/shm), or lower "
            "message_memory in the layer's CONFIG")
    if free < need or (total and free < total // 10):
        out.append(
            f"{SHM_DIR} is nearly full: {human_size(free)} free of {human_size(total)}; a new "
            "segment may not fit. Remove stale segments ('asgi-ipc doctor --clean') or enlarge it")
    return out


# ===== systemd-logind's RemoveIPC ================================================================
def systemd_running() -> bool:
    """True when systemd is this machine's init (sd_booted(3): ``/run/systemd/system`` exists)."""
    return os.path.isdir("/run/systemd/system")


def removeipc_warning(uid: int, sys_uid_max: int, systemd: bool, remove_ipc: bool,
                      in_session: bool) -> str | None:
    """The warning about systemd-logind's ``RemoveIPC`` for a process of ``uid``, or None.

    logind removes every shared-memory object of a *regular* user (uid above ``SYS_UID_MAX``)
    when that user's last login session ends, which silently kills a site started from an SSH
    session. System users and root are exempt; without systemd there is no logind to do it.
    """
    if not systemd or not remove_ipc or uid == 0 or uid <= sys_uid_max:
        return None
    where = "this login session" if in_session else "the last login session of that user"
    return (
        f"uid {uid} ({user_name(uid)}) is a regular user and systemd-logind has RemoveIPC=yes: its "
        f"shared memory, the channel layer included, is deleted when {where} ends. Run the "
        "site as a system user (a service's User=) or set RemoveIPC=no in "
        "/etc/systemd/logind.conf")


def _sys_uid_max() -> int:
    try:
        with open("/etc/login.defs") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "SYS_UID_MAX" and parts[1].isdigit():
                    return int(parts[1])
    except OSError:
        pass
    return 999


def _logind_remove_ipc() -> bool:
    """``RemoveIPC`` as configured (systemd's default is yes); later files override."""
    value = True
    paths = ["/etc/systemd/logind.conf"]
    for d in ("/usr/lib/systemd/logind.conf.d", "/run/systemd/logind.conf.d",
              "/etc/systemd/logind.conf.d"):
        paths.extend(sorted(glob.glob(os.path.join(d, "*.conf"))))
    for path in paths:
        try:
            with open(path) as f:
                for line in f:
                    key, sep, val = line.strip().partition("=")
                    if sep and key.strip() == "RemoveIPC":
                        value = val.strip().lower() not in ("no", "false", "0", "off")
        except OSError:
            continue
    return value


def _in_login_session() -> bool:
    try:
        with open("/proc/self/sessionid") as f:
            return f.read().strip() not in ("", "4294967295")
    except OSError:
        return bool(os.environ.get("XDG_SESSION_ID"))


def environment_warnings() -> tuple[dict[str, int] | None, list[str]]:
    """``/dev/shm`` capacity (None if unreadable) and the warnings about this machine's setup."""
    warnings = []
    try:
        shm: dict[str, int] | None = shm_space()
        warnings += space_warnings(shm["total_bytes"], shm["free_bytes"], default_segment_bytes())
    except OSError as exc:
        shm = None
        warnings.append(f"cannot read {SHM_DIR} ({exc.strerror}); POSIX shared memory is "
                        "needed by the channel layer")
    systemd = systemd_running()
    note = removeipc_warning(os.getuid(), _sys_uid_max(), systemd,
                             systemd and _logind_remove_ipc(), _in_login_session())
    if note:
        warnings.append(note)
    return shm, warnings


# ===== the segments ==============================================================================
def _state(info: SegmentInfo) -> str:
    if not info.valid:
        return "invalid"
    if info.creator_alive:
        return "in use"
    return "orphaned" if info.attached_pids else "stale"


def _examine(info: SegmentInfo) -> dict[str, Any]:
    """One segment's record (without consistency check or removal). ``state`` is one of in use,
    orphaned, stale, invalid, or (set by the check) gone."""
    try:
        mtime = os.stat(info.path).st_mtime
    except OSError:
        mtime = 0.0
    created = info.created or mtime
    notes = []
    removable = info.stale and not info.attached_pids
    if removable and not info.valid and time.time() - mtime < CREATION_GRACE:
        removable = False
        notes.append(f"changed {max(0.0, time.time() - mtime):.0f}s ago, so a site may be "
                     f"creating it right now; --clean removes it once it is "
                     f"{CREATION_GRACE:.0f}s old")
    if info.mode & 0o077:
        notes.append(f"mode {info.mode:04o} lets other users read or write it; asgi_ipc "
                     "creates segments 0600")
    return {
        "name": info.name,
        "prefix": info.prefix,
        "path": info.path,
        "size": info.size,
        "uid": info.uid,
        "owner": user_name(info.uid),
        "mode": f"{info.mode:04o}",
        "creator_pid": info.creator_pid or None,
        "creator_alive": info.creator_alive,
        "created": created or None,
        "age": (time.time() - created) if created else None,
        "attached_pids": list(info.attached_pids),
        "state": _state(info),
        "verdict": info.verdict() if info.valid or not info.attached_pids else
        f"invalid: {info.problem}; mapped by pids {', '.join(map(str, info.attached_pids))}",
        "removable": removable,
        "problems": None,
        "notes": notes,
        "removed": False,
    }


def _check(record: dict[str, Any]) -> None:
    """Run the layer's consistency check on a valid segment someone uses (attach only)."""
    if record["uid"] != os.getuid():
        record["notes"].append(f"not checked: it belongs to uid {record['uid']}")
        return
    from .layer import IPCChannelLayer

    try:
        layer = IPCChannelLayer(prefix=record["prefix"], create=False, lock_timeout=5.0)
    except SegmentMissing:
        # Its site stopped between the listing and now: nothing to check, nothing wrong.
        record["state"] = "gone"
        record["notes"].append("gone: removed (its site stopped) while doctor was looking at it")
        return
    except (SegmentError, ValueError) as exc:
        record["problems"] = [f"cannot attach: {exc}"]
        return
    try:
        record["problems"] = layer.check()
    except SegmentError as exc:
        record["problems"] = [f"check failed: {exc}"]
    finally:
        layer.close()


def _remove(record: dict[str, Any]) -> str | None:
    """Remove a removable segment after judging it again; return an error line or None."""
    try:
        fresh = _examine(inspect(record["name"]))
    except FileNotFoundError:
        record["removed"] = True  # someone else removed it meanwhile
        return None
    except OSError as exc:
        return f"cannot read {record['path']} again: {exc.strerror}"
    if not fresh["removable"]:  # someone started using it since the survey: not an error
        record.update(fresh)
        record["notes"].append("kept: it changed while doctor was looking at it")
        return None
    try:
        _segment.remove(record["name"])
    except posix_ipc.ExistentialError:
        pass  # already gone
    except (posix_ipc.PermissionsError, OSError) as exc:
        return f"cannot remove {record['path']}: {exc}"
    record["removed"] = True
    return None


def survey(prefixes: Sequence[str] | None = None, clean: bool = False) -> dict[str, Any]:
    """Everything a doctor reports about the layer, as plain data (the ``--json`` document).

    ``prefixes`` limits it to those layers. Valid segments that processes use are attached to
    and consistency-checked; with ``clean``, stale and invalid segments that no process maps
    are removed (each judged again just before).

    :returns: ``{"shm_dir", "shm", "warnings", "segments": [record...], "removed", "errors",
        "fastpath": {"active", "reason"}}``.
    """
    shm, warnings = environment_warnings()
    wanted = set(prefixes) if prefixes else None
    records = [_examine(info) for info in list_segments()
               if wanted is None or info.prefix in wanted]
    errors = []
    for record in records:
        if record["state"] in ("in use", "orphaned"):
            _check(record)
        elif clean and record["removable"]:
            error = _remove(record)
            if error:
                errors.append(error)
    return {"shm_dir": SHM_DIR, "shm": shm, "warnings": warnings, "segments": records,
            "removed": [r["name"] for r in records if r["removed"]], "errors": errors,
            "fastpath": asdict(fastpath_status())}


# ===== formatting helpers shared by the command lines ===========================================
def human_size(n: float) -> str:
    """``41943040`` -> ``40.0 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover - the loop always returns


def user_name(uid: int) -> str:
    """The login name of ``uid``, or the number when it has none."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
