"""Text rendering of ``procman status`` (the JSON form is the raw control-socket answer)."""

from __future__ import annotations

import time
from typing import Any

__all__ = ["format_status", "human_bytes", "human_seconds"]


def human_bytes(value: int | None) -> str:
    """``123456789`` -> ``117.7M``; None -> ``-``."""
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "K", "M", "G"):
        if size < 1024 or unit == "G":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return f"{size:.1f}G"


def human_seconds(value: float | None) -> str:
    """``3725`` -> ``1h02m``; None -> ``-``."""
    if value is None:
        return "-"
    seconds = int(value)
    if seconds < 60:
        return f"{value:.1f}s" if value < 10 else f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return lines


def format_status(status: dict[str, Any]) -> str:
    """Render the control socket's status answer for people."""
    sup = status.get("supervisor", {})
    site = status.get("site", {})
    lines = []
    title = f"site {site['prefix']!r} ({site.get('settings')})" if site else "supervisor"
    state = "stopping" if sup.get("stopping") else ("ready" if sup.get("ready") else "starting")
    lines.append(f"{title}: {state}, pid {sup.get('pid')}, up {human_seconds(sup.get('uptime'))}, "
                 f"RSS {human_bytes(sup.get('rss'))}")
    if site.get("listen"):
        lines.append(f"listening on {', '.join(site['listen'])}")
    if site.get("fastpath"):
        fast = site["fastpath"]
        lines.append("fast path: active" if fast["active"] else f"fast path: inactive ({fast['reason']})")
    lines.append("")
    rows = []
    for proc in status.get("processes", []):
        requests = proc.get("requests")
        rows.append([
            proc["name"], str(proc["pid"]), proc["state"], human_seconds(proc.get("uptime")),
            str(proc.get("restarts", 0)), human_bytes(proc.get("rss")),
            "-" if proc.get("cpu_percent") is None else f"{proc['cpu_percent']:.1f}%",
            "-" if proc.get("last_heartbeat") is None else f"{proc['last_heartbeat']:.1f}s ago",
            "-" if requests is None else str(requests),
        ])
    lines += _table(["PROCESS", "PID", "STATE", "UPTIME", "RESTARTS", "RSS", "CPU", "HEARTBEAT", "REQUESTS"], rows)
    lines += _cluster_lines(status.get("cluster"))
    layer = status.get("layer")
    if layer:
        lines.append("")
        if "error" in layer:
            lines.append(f"layer: statistics unavailable ({layer['error']})")
        else:
            g = layer.get("global", {})
            lines.append(
                f"layer: {g.get('messages_pending', 0)} pending, {g.get('messages_count', 0)} sent "
                f"({g.get('messages_count_per_second', 0):.1f}/s), oldest {g.get('messages_max_age', 0):.2f}s, "
                f"channel full {g.get('channel_full_count', 0)}, expired {g.get('messages_expired', 0)}, "
                f"group drops {g.get('group_drops', 0)}, memory free "
                f"{human_bytes(g.get('memory_free_bytes'))} of {human_bytes(g.get('memory_bytes'))}"
            )
            rows = [
                [name, str(c.get("messages_pending", 0)), f"{c.get('messages_max_age', 0):.2f}s",
                 str(c.get("messages_count", 0)), str(c.get("channel_full_count", 0))]
                for name, c in sorted(layer.get("channels", {}).items())
            ]
            lines += _table(["CHANNEL", "PENDING", "OLDEST", "SENT", "FULL"], rows)
    return "\n".join(lines)


def _cluster_lines(cluster: dict[str, Any] | None) -> list[str]:
    """The ``cluster`` row (``procman run --cluster``): link state, traffic each way, drops, lag."""
    if not cluster:
        return []
    state = cluster.get("state", "unknown")
    if state in ("starting", "unknown"):
        return ["", f"cluster: {state}" + (f" ({cluster['error']})" if cluster.get("error") else "")]

    def lag(way: str) -> str:
        value = (cluster.get("lag") or {}).get(way)
        return "-" if not value else f"{value['p50'] * 1000:.1f}/{value['p99'] * 1000:.1f} ms"

    stale = cluster.get("age", 0.0) > 5
    since = cluster.get("since")
    state += "" if since is None else f" for {human_seconds(max(0.0, time.time() - since))}"
    line = (f"cluster: {state}{' (stale: the link has not reported for ' + human_seconds(cluster['age']) + ')' if stale else ''}"
            f" to {cluster.get('url')} as {cluster.get('origin')}, {cluster.get('machines', 0)} machine(s) seen, relayed out {cluster.get('relayed_out', 0)}, "
            f"in {cluster.get('relayed_in', 0)}, drops {cluster.get('drops', 0)}, "
            f"lag p50/p99 out {lag('out')}, in {lag('in')}")
    lines = ["", line]
    if state != "connected" and cluster.get("last_error"):
        lines.append(f"cluster: last error: {cluster['last_error']}")
    return lines
