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
import json
import os
import sys
import time
from typing import Any, NoReturn, Sequence

from . import __version__
from .errors import SegmentError, SegmentMissing
from .layer import IPCChannelLayer
from .diagnostics import human_size as _size
from .diagnostics import removeipc_warning, space_warnings, survey
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
# The rules live in asgi_ipc.diagnostics (shared with `procman doctor`); this is their text form.
def render_survey(data: dict[str, Any], clean: bool) -> str:
    """The ``doctor`` document as text for people."""
    lines = []
    shm = data["shm"]
    if shm is not None:
        lines.append(f"{data['shm_dir']}: {_size(shm['free_bytes'])} free of "
                     f"{_size(shm['total_bytes'])}")
    fast = data["fastpath"]
    lines.append("fast path: active" if fast["active"] else f"fast path: inactive: {fast['reason']}")
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
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
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
