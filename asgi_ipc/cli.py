"""The operator's command line, ``asgi-ipc``: look at, check and empty a running layer.

Commands::

    asgi-ipc stats  --prefix P [--json] [--channel NAME ...]   what is queued, sent, dropped
    asgi-ipc doctor [--prefix P ...] [--clean] [--json]        this project's segments in /dev/shm
    asgi-ipc flush  --prefix P                                 empty a running layer

The tools only ever *attach* to a segment (``create=False``) and detach afterwards, so a typo
in a prefix can never create a segment and an attacher never removes one; ``doctor --clean``
removes a segment only when nothing can be using it (its creator is dead and no process maps
it, or it is not a usable asgi_ipc segment and no process maps it).

Exit codes: 0 success; 1 a runtime problem (no such segment, a segment that cannot be
attached, ``doctor`` found inconsistencies or could not remove something); 2 bad usage (unknown
flag, bad prefix or channel name). Expected errors print one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import pwd
import sys
import time
from typing import Any, NoReturn, Sequence

import posix_ipc

from . import segment as _segment
from .errors import SegmentError, SegmentMissing
from .layer import IPCChannelLayer
from .layout import Layout, Sizes
from .names import validate_channel
from .segment import NAME_PREFIX, SHM_DIR, SegmentInfo, inspect, list_segments, validate_prefix

__all__ = [
    "main",
    "attach",
    "collect_stats",
    "survey",
    "space_warnings",
    "removeipc_warning",
    "CommandError",
]

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2

# An invalid-looking segment changed this recently may be one a site is creating right now (its
# header is written after the memory is reserved): ``--clean`` leaves it alone until it is older.
CREATION_GRACE = 10.0


class CommandError(Exception):
    """An expected failure: ``str(self)`` is the one line for stderr, ``code`` the exit code."""

    def __init__(self, message: str, code: int = EXIT_RUNTIME) -> None:
        super().__init__(message)
        self.code = code


# ===== attaching =================================================================================
def attach(prefix: str, lock_timeout: float = 10.0) -> IPCChannelLayer:
    """Attach to the existing layer ``prefix`` with whatever sizes it was created with.

    Never creates a segment. Raises ``CommandError`` (exit 2) for an unusable prefix and
    (exit 1) when there is no such segment or it cannot be attached; the caller must
    ``close()`` the layer, which never removes the segment.
    """
    try:
        validate_prefix(prefix)
    except ValueError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    try:
        # attach-only with no sizes given: the layer adopts the segment's own sizes
        return IPCChannelLayer(prefix=prefix, create=False, lock_timeout=lock_timeout)
    except SegmentMissing as exc:
        others = [info.prefix for info in list_segments() if info.valid]
        hint = f" (segments present: {', '.join(others)})" if others else ""
        raise CommandError(f"{exc}{hint}") from None
    except (SegmentError, ValueError) as exc:
        raise CommandError(f"cannot attach to layer {prefix!r}: {exc}") from None


# ===== stats =====================================================================================
def collect_stats(layer: IPCChannelLayer, channels: Sequence[str] | None = None) -> dict[str, Any]:
    """Everything ``stats`` shows, as plain data (the ``--json`` document).

    ``channels`` limits the per-channel part to those names (zeros for a channel with no
    record); by default every channel record is listed. Process-specific names report their
    ``prefix!`` record, as the layer keeps one queue per ``prefix!``.
    """
    try:
        info: SegmentInfo | None = inspect(NAME_PREFIX + layer.prefix)
    except OSError:
        info = None  # removed since we attached; the numbers below are still this mapping's
    totals = layer.global_statistics()
    if channels:
        rows = [(name, layer.channel_statistics(name)) for name in channels]
    else:
        rows = sorted(layer.channel_list())
    return {
        "prefix": layer.prefix,
        "time": time.time(),
        "segment": None if info is None else {
            "name": info.name,
            "path": info.path,
            "size": info.size,
            "creator_pid": info.creator_pid,
            "creator_alive": info.creator_alive,
            "created": info.created,
            # the processes of the site: this tool's own mapping is not one of them
            "attached_pids": [pid for pid in info.attached_pids if pid != os.getpid()],
        },
        "global": totals,
        "channels": [{"channel": name, **stats} for name, stats in rows],
        "groups": dict(sorted(layer.group_sizes().items())),
    }


def render_stats(data: dict[str, Any]) -> str:
    """The ``stats`` document as text for people."""
    g = data["global"]
    seg = data["segment"]
    lines = []
    if seg is not None:
        age = data["time"] - seg["created"] if seg["created"] else 0.0
        creator = f"pid {seg['creator_pid']}" + ("" if seg["creator_alive"] else " (gone)")
        lines.append(f"layer {data['prefix']!r}: {seg['path']}, {_size(seg['size'])}, created "
                     f"{_age(age)} ago by {creator}, mapped by {len(seg['attached_pids'])} "
                     "process(es)")
    else:
        lines.append(f"layer {data['prefix']!r}: segment no longer in {SHM_DIR}")
    lines.append(
        f"messages: {g['messages_pending']} queued"
        + (f", oldest {_seconds(g['messages_max_age'])}" if g["messages_pending"] else "")
        + f"; sent {g['messages_count']} ({g['messages_count_per_second']:.1f}/s), "
        + (f"received {g['messages_received']}, " if "messages_received" in g else "")
        + f"expired {g['messages_expired']}")
    lines.append(
        f"refused: channel full {g['channel_full_count']} "
        f"({g['channel_full_count_per_second']:.1f}/s), memory full {g['arena_full_count']}, "
        f"too large {g['message_too_large_count']}")
    used = g["memory_bytes"] - g["memory_free_bytes"]
    lines.append(f"memory: {_size(used)} used, {_size(g['memory_free_bytes'])} free of "
                 f"{_size(g['memory_bytes'])}")
    lines.append(f"groups: {g['groups']} with {g['group_members']} members; group sends "
                 f"{g['group_sends']} -> {g['group_deliveries']} deliveries, "
                 f"{g['group_drops']} dropped (full)")
    lines.append("")
    if data["channels"]:
        lines.append(_table(
            ["CHANNEL", "DEPTH", "OLDEST", "SENT", "RECEIVED", "EXPIRED", "FULL", "SENT/S",
             "FULL/S"],
            [[c["channel"], c["messages_pending"],
              _seconds(c["messages_max_age"]) if c["messages_pending"] else "-",
              c["messages_count"], c.get("messages_received", 0), c.get("messages_expired", 0),
              c["channel_full_count"], f"{c['messages_count_per_second']:.1f}",
              f"{c['channel_full_count_per_second']:.1f}"] for c in data["channels"]],
            "lrrrrrrrr"))
    else:
        lines.append("no channels")
    lines.append("")
    if data["groups"]:
        lines.append(_table(["GROUP", "MEMBERS"], [[k, v] for k, v in data["groups"].items()],
                            "lr"))
    else:
        lines.append("no groups")
    return "\n".join(lines)


def cmd_stats(args: argparse.Namespace) -> int:
    channels = args.channel or None
    for name in channels or ():
        try:
            validate_channel(name)
        except TypeError as exc:
            raise CommandError(str(exc), EXIT_USAGE) from None
    layer = attach(args.prefix)
    try:
        data = collect_stats(layer, channels)
    except SegmentError as exc:
        raise CommandError(f"cannot read layer {args.prefix!r}: {exc}") from None
    finally:
        layer.close()
    _print(json.dumps(data, indent=2) if args.json else render_stats(data))
    return EXIT_OK


# ===== flush =====================================================================================
def cmd_flush(args: argparse.Namespace) -> int:
    layer = attach(args.prefix)
    try:
        before = layer.global_statistics()
        layer.flush()
    except SegmentError as exc:
        raise CommandError(f"cannot flush layer {args.prefix!r}: {exc}") from None
    finally:
        layer.close()
    _print(f"flushed layer {args.prefix!r}: dropped {before['messages_pending']} queued "
           f"message(s) and {before['group_members']} membership(s) of {before['groups']} "
           "group(s)")
    return EXIT_OK


# ===== doctor ====================================================================================
def default_segment_bytes() -> int:
    """Size of a segment made with the layer's default settings."""
    return Layout(Sizes.from_config(32 * 2**20, 4096, 4096, 32768, 256, 2**20)).total


def space_warnings(total: int, free: int, need: int) -> list[str]:
    """Warnings about a shared-memory filesystem of ``total`` bytes with ``free`` left, for
    segments of about ``need`` bytes (pure; ``doctor`` feeds it ``statvfs``)."""
    out = []
    if total < 2 * need:
        out.append(
            f"{SHM_DIR} is only {_size(total)}; a site with default settings needs "
            f"{_size(need)} and a restart briefly needs twice that. Enlarge it (Docker: "
            "--shm-size=256m; otherwise: mount -o remount,size=512m /dev/shm)")
    if free < need or (total and free < total // 10):
        out.append(
            f"{SHM_DIR} is nearly full: {_size(free)} free of {_size(total)}; a new segment "
            f"may not fit. Remove stale segments ('asgi-ipc doctor --clean') or enlarge it")
    return out


def removeipc_warning(uid: int, sys_uid_max: int, systemd: bool, remove_ipc: bool,
                      in_session: bool) -> str | None:
    """The warning about systemd-logind's ``RemoveIPC`` for a process of ``uid``, or None.

    logind removes every shared-memory object of a *regular* user (uid above ``SYS_UID_MAX``)
    when that user's last login session ends, which silently kills a site started from an SSH
    session. System users and root are exempt.
    """
    if not systemd or not remove_ipc or uid == 0 or uid <= sys_uid_max:
        return None
    where = "this login session" if in_session else "the last login session of that user"
    return (
        f"uid {uid} ({_user(uid)}) is a regular user and systemd-logind has RemoveIPC=yes: its "
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
    """``/dev/shm`` capacity and the warnings about this machine's setup."""
    warnings = []
    try:
        st = os.statvfs(SHM_DIR)
        shm = {"total_bytes": st.f_blocks * st.f_frsize, "free_bytes": st.f_bavail * st.f_frsize}
        warnings += space_warnings(shm["total_bytes"], shm["free_bytes"], default_segment_bytes())
    except OSError as exc:
        shm = None
        warnings.append(f"cannot read {SHM_DIR} ({exc.strerror}); POSIX shared memory is "
                        "needed by the channel layer")
    note = removeipc_warning(os.getuid(), _sys_uid_max(), os.path.isdir("/run/systemd/system"),
                             _logind_remove_ipc(), _in_login_session())
    if note:
        warnings.append(note)
    return shm, warnings


def _state(info: SegmentInfo) -> str:
    if not info.valid:
        return "invalid"
    if info.creator_alive:
        return "in use"
    return "orphaned" if info.attached_pids else "stale"


def _examine(info: SegmentInfo) -> dict[str, Any]:
    """One segment's ``doctor`` record (without consistency check or removal)."""
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
        "owner": _user(info.uid),
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
    """Run the layer's consistency check on a valid segment someone uses."""
    if record["uid"] != os.getuid():
        record["notes"].append(f"not checked: it belongs to uid {record['uid']}")
        return
    try:
        layer = attach(record["prefix"], lock_timeout=5.0)
    except CommandError as exc:
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
    """Everything ``doctor`` reports, as plain data (the ``--json`` document).

    ``prefixes`` limits it to those layers. Valid segments that processes use are attached to
    and consistency-checked; with ``clean``, stale and invalid segments that no process maps
    are removed (each judged again just before).
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
            "removed": [r["name"] for r in records if r["removed"]], "errors": errors}


def render_survey(data: dict[str, Any], clean: bool) -> str:
    """The ``doctor`` document as text for people."""
    lines = []
    shm = data["shm"]
    if shm is not None:
        lines.append(f"{data['shm_dir']}: {_size(shm['free_bytes'])} free of "
                     f"{_size(shm['total_bytes'])}")
    records = data["segments"]
    if records:
        lines.append("")
        lines.append(_table(
            ["SEGMENT", "SIZE", "OWNER", "MODE", "CREATOR", "AGE", "ATTACHED", "STATE"],
            [[r["name"], _size(r["size"]), r["owner"], r["mode"], r["creator_pid"] or "-",
              _age(r["age"]) if r["age"] is not None else "-", _pids(r["attached_pids"]),
              "removed" if r["removed"] else r["state"]] for r in records],
            "lrllrrll"))
        lines.append("")
        for r in records:
            lines.append(f"{r['name']}: {r['verdict']}")
            for problem in r["problems"] or ():
                lines.append(f"  inconsistent: {problem}")
            if r["problems"] == []:
                lines.append("  consistency check passed")
            for note in r["notes"]:
                lines.append(f"  note: {note}")
    else:
        lines.append(f"no asgi_ipc segments in {data['shm_dir']}")
    for warning in data["warnings"]:
        lines.append(f"warning: {warning}")
    for error in data["errors"]:
        lines.append(f"error: {error}")
    if data["removed"]:
        lines.append(f"removed: {', '.join(data['removed'])}")
    leftover = [r["name"] for r in records if r["removable"] and not r["removed"]]
    if leftover and not clean:
        lines.append(f"{len(leftover)} segment(s) can be removed safely: run "
                     "'asgi-ipc doctor --clean'")
    return "\n".join(lines)


def cmd_doctor(args: argparse.Namespace) -> int:
    for prefix in args.prefix or ():
        try:
            validate_prefix(prefix)
        except ValueError as exc:
            raise CommandError(str(exc), EXIT_USAGE) from None
    data = survey(args.prefix, clean=args.clean)
    _print(json.dumps(data, indent=2) if args.json else render_survey(data, args.clean))
    unhealthy = any(r["problems"] for r in data["segments"])
    return EXIT_RUNTIME if unhealthy or data["errors"] else EXIT_OK


# ===== formatting ================================================================================
def _table(headers: list[str], rows: list[list[Any]], align: str) -> str:
    """Columns padded to their widest cell; ``align`` holds ``l`` or ``r`` per column."""
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    out = []
    for row in cells:
        parts = [c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(row, widths, align)]
        out.append("  ".join(parts).rstrip())
    return "\n".join(out)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover - the loop always returns


def _seconds(s: float) -> str:
    return f"{s:.3f}s" if s < 10 else _age(s)


def _age(s: float) -> str:
    s = max(0.0, s)
    if s < 60:
        return f"{s:.0f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    if s < 86400:
        return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"
    return f"{int(s // 86400)}d{int(s % 86400 // 3600):02d}h"


def _pids(pids: list[int]) -> str:
    if not pids:
        return "-"
    shown = ",".join(map(str, pids[:4]))
    return shown + (f",+{len(pids) - 4}" if len(pids) > 4 else "")


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _print(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


# ===== command line ==============================================================================
class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (through ``CommandError``), not a usage dump."""

    def error(self, message: str) -> NoReturn:
        raise CommandError(f"{self.prog}: error: {message} (see '{self.prog} --help')", EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    """The ``asgi-ipc`` argument parser."""
    parser = _Parser(prog="asgi-ipc", description="Inspect, check and flush asgi_ipc channel "
                     "layers (shared-memory segments in /dev/shm).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    stats = sub.add_parser("stats", help="queues, counters, groups and memory of a layer",
                           description="Show a running layer's global and per-channel "
                           "statistics, its groups and its memory.")
    stats.add_argument("--prefix", required=True, help="the layer's prefix (as in settings)")
    stats.add_argument("--json", action="store_true", help="print JSON for tools")
    stats.add_argument("--channel", action="append", metavar="NAME",
                       help="only these channels (repeatable); default: every channel")
    stats.set_defaults(run=cmd_stats)

    doctor = sub.add_parser("doctor", help="list segments in /dev/shm and say which are stale",
                            description="List this project's shared-memory segments with "
                            "their state, check the ones in use, warn about the machine's "
                            "setup, and optionally remove the stale ones.")
    doctor.add_argument("--prefix", action="append", metavar="P",
                        help="only this layer (repeatable); default: every asgi_ipc segment")
    doctor.add_argument("--clean", action="store_true",
                        help="remove stale and invalid segments that no process maps")
    doctor.add_argument("--json", action="store_true", help="print JSON for tools")
    doctor.set_defaults(run=cmd_doctor)

    flush = sub.add_parser("flush", help="drop every queued message and group membership",
                           description="Empty the queues and groups of a running layer.")
    flush.add_argument("--prefix", required=True, help="the layer's prefix (as in settings)")
    flush.set_defaults(run=cmd_flush)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``asgi-ipc`` with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    try:
        args = build_parser().parse_args(argv)
        return args.run(args)
    except CommandError as exc:
        sys.stderr.write(f"asgi-ipc: error: {exc}\n" if not str(exc).startswith("asgi-ipc")
                         else f"{exc}\n")
        return exc.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader (e.g. ``| head``) went away: quietly, and without a second error at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
