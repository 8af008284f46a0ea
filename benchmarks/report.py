"""Turning benchmark results into the table: one row per measured quantity, with ratios and budgets.

``results`` is ``{case id: {backend: metrics dict}}`` as built by ``layer_bench``; a metrics dict
holding ``"error"`` means that backend's case failed. :func:`build_rows` picks the numbers to show,
computes ``ours / channels_redis`` and checks each ``layer.*`` budget of ``benchmarks/budgets.py`` that
the benchmark can measure (``PASS``/``FAIL``; ``n.a.`` when a row has no budget or a number is
missing); :func:`budget_entries` gives those checks in the result file's form.
:func:`format_table` renders the rows as a Markdown table, which is what the README records.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from benchmarks import budgets
from benchmarks.stats import ratio as _ratio

__all__ = ["Row", "budget_entries", "build_rows", "format_table", "format_value", "markdown_table"]

Results = dict[str, dict[str, dict[str, Any]]]


@dataclass
class Row:
    """One line of the table. Values are numbers, short strings, or None (not measured / failed)."""

    case: str
    unit: str
    ours: Any
    redis: Any
    floor: Any
    budget: str
    verdict: str
    fmt: str = "rate"  # rate | us | ms | ratio | cpu | text
    budget_id: str = ""  # the benchmarks/budgets.py entry this row checks
    measured: float | None = None  # the number compared with that budget's limit


def _get(results: Results, case: str, backend: str, key: str) -> Any:
    metrics = results.get(case, {}).get(backend)
    if not metrics or "error" in metrics:
        return None
    return metrics.get(key)


def _judged(case: str, unit: str, ours: Any, redis: Any, floor: Any, budget_id: str, measured: float | None,
            *also: bool, fmt: str = "rate") -> Row:
    """A row checking the budget ``budget_id`` with ``measured`` (and the extra conditions)."""
    return Row(case, unit, ours, redis, floor, budgets.get(budget_id).text, budgets.verdict(budget_id, measured, *also),
               fmt, budget_id, measured)


def _lost_share(lost: Any, sent: Any) -> float | None:
    """Lost messages as a share of those sent; None if not measured."""
    return None if lost is None or not sent else lost / sent


def _dup_lost(results: Results, case: str, backend: str) -> str | None:
    dup, lost = _get(results, case, backend, "duplicates"), _get(results, case, backend, "lost")
    if dup is None or lost is None:
        return None
    return f"{dup} / {lost}"


def _cross_rows(results: Results) -> list[Row]:
    rows = []
    one = _get(results, "cross_1to1", "ours", "rate")
    one_redis = _get(results, "cross_1to1", "redis", "rate")
    floor = _get(results, "floor_http", "floor", "rate")
    rows.append(_judged("cross-process 1 -> 1", "msgs/s", one, one_redis, floor, "layer.cross_1to1",
                        _ratio(one, one_redis)))
    dup1, sent1 = _get(results, "cross_1to1", "ours", "duplicates"), _get(results, "cross_1to1", "ours", "sent")
    lost1 = _get(results, "cross_1to1", "ours", "lost")
    rows.append(_judged("  1 -> 1 duplicates / lost", "msgs", _dup_lost(results, "cross_1to1", "ours"),
                        _dup_lost(results, "cross_1to1", "redis"), None, "layer.lost_share",
                        _lost_share(lost1, sent1), dup1 == 0, fmt="text"))
    two = _get(results, "cross_2to2", "ours", "rate")
    two_redis = _get(results, "cross_2to2", "redis", "rate")
    dup2, sent2 = _get(results, "cross_2to2", "ours", "duplicates"), _get(results, "cross_2to2", "ours", "sent")
    lost2 = _get(results, "cross_2to2", "ours", "lost")
    rows.append(_judged("cross-process 2 -> 2", "msgs/s", two, two_redis, floor, "layer.cross_2to2", _ratio(two, one)))
    rows.append(_judged("  2 -> 2 duplicates / lost", "msgs", _dup_lost(results, "cross_2to2", "ours"),
                        _dup_lost(results, "cross_2to2", "redis"), None, "layer.lost_share",
                        _lost_share(lost2, sent2), dup2 == 0, fmt="text"))
    return rows


def _rtt_rows(results: Results) -> list[Row]:
    # floor: the same request/reply msgpack'd between two processes over FIFOs, no layer
    p50, p50_floor = _get(results, "rtt", "ours", "p50_us"), _get(results, "floor_rtt", "floor", "p50_us")
    p99, p99_redis = _get(results, "rtt", "ours", "p99_us"), _get(results, "rtt", "redis", "p99_us")
    return [
        _judged("round trip p50", "us", p50, _get(results, "rtt", "redis", "p50_us"), p50_floor, "layer.rtt_p50",
                _ratio(p50, p50_floor), fmt="us"),
        _judged("round trip p99", "us", p99, p99_redis, _get(results, "floor_rtt", "floor", "p99_us"), "layer.rtt_p99",
                _ratio(p99, p99_redis), fmt="us"),
    ]


def _group_rows(results: Results) -> list[Row]:
    rows = []
    for members in (100, 1000):
        case = f"group_{members}"
        send, send_redis = _get(results, case, "ours", "send_ms"), _get(results, case, "redis", "send_ms")
        lost, dup = _get(results, case, "ours", "lost"), _get(results, case, "ours", "duplicates")
        incomplete = _get(results, case, "ours", "incomplete_rounds")
        if members == 1000:
            rows.append(_judged(f"send_group {members}: send", "ms", send, send_redis, None, "layer.group_1000_send",
                                send, lost == 0, incomplete == 0, fmt="ms"))
        else:
            rows.append(Row(f"send_group {members}: send", "ms", send, send_redis, None, "", "n.a.", "ms"))
        rows.append(Row(f"send_group {members}: all delivered", "ms", _get(results, case, "ours", "delivered_ms"),
                        _get(results, case, "redis", "delivered_ms"), None, "", "n.a.", "ms"))
        rows.append(Row(f"send_group {members}: dup / lost", "msgs", _dup_lost(results, case, "ours"),
                        _dup_lost(results, case, "redis"), None, "0 / 0",
                        "n.a." if lost is None or dup is None else "PASS" if lost == dup == 0 else "FAIL", "text"))
    return rows


def _size_rows(results: Results) -> list[Row]:
    rows = []
    for label, case in (("100 B", "size_100"), ("10 KB", "size_10k"), ("512 KB", "size_512k")):
        floor_case = "floor_" + case.split("_", 1)[1]
        rows.append(Row(f"{label} messages, 1 -> 1", "msgs/s", _get(results, case, "ours", "rate"),
                        _get(results, case, "redis", "rate"), _get(results, floor_case, "floor", "rate"), "", "n.a."))
        ours, redis = _get(results, case, "ours", "mb_per_s"), _get(results, case, "redis", "mb_per_s")
        floor = _get(results, floor_case, "floor", "mb_per_s")
        if case == "size_512k":
            rows.append(_judged(f"{label} messages, 1 -> 1", "MB/s", ours, redis, floor, "layer.size_512k",
                                _ratio(ours, redis), fmt="mbps"))
        else:
            rows.append(Row(f"{label} messages, 1 -> 1", "MB/s", ours, redis, floor, "", "n.a.", "mbps"))
    return rows


def _depth_rate(results: Results, case: str, backend: str, depth: int) -> float | None:
    by_depth = _get(results, case, backend, f"depth_{depth}")
    return by_depth["rate"] if by_depth else None


def _queued_rows(results: Results) -> list[Row]:
    rows = []
    floor = _get(results, "floor_http", "floor", "rate")
    for depth in (10, 1000, 10000):
        rows.append(Row(f"pairs with {depth:,} queued", "pairs/s", _depth_rate(results, "queued", "ours", depth),
                        _depth_rate(results, "queued", "redis", depth), floor, "", "n.a."))
    ours = _ratio(_depth_rate(results, "queued", "ours", 10000), _depth_rate(results, "queued", "ours", 10))
    redis = _ratio(_depth_rate(results, "queued", "redis", 10000), _depth_rate(results, "queued", "redis", 10))
    rows.append(_judged("  10,000 queued vs 10", "ratio", ours, redis, None, "layer.queued_flat", ours, fmt="ratio"))
    return rows


def _idle_rows(results: Results) -> list[Row]:
    rows = []
    for label, case in (("receive(block=True)", "idle_sync"), ("receive_async", "idle_async")):
        ours = _get(results, case, "ours", "cpu_ms_per_s")
        rows.append(_judged(f"idle blocked receiver, {label}", "CPU ms/s", ours,
                            _get(results, case, "redis", "cpu_ms_per_s"), None, "layer.idle_cpu", ours, fmt="cpu"))
    return rows


def build_rows(results: Results) -> list[Row]:
    """All table rows, in the order of the issue's case list."""
    pairs = Row("single process send+receive", "pairs/s", _depth_rate(results, "pairs", "ours", 0),
                _depth_rate(results, "pairs", "redis", 0), _get(results, "floor_http", "floor", "rate"), "", "n.a.")
    return (
        [pairs]
        + _cross_rows(results)
        + _rtt_rows(results)
        + _group_rows(results)
        + _size_rows(results)
        + _queued_rows(results)
        + _idle_rows(results)
    )


def budget_entries(rows: list[Row]) -> list[dict[str, Any]]:
    """The rows that check a budget, as the ``budgets`` list of the result file."""
    entries = []
    for row in rows:
        if row.budget_id:
            entry = budgets.check(row.budget_id, row.measured, note=row.case.strip())
            entry["verdict"] = row.verdict  # the row's, which also holds its extra conditions
            entries.append(entry)
    return entries


def format_value(value: Any, fmt: str) -> str:
    """A number as the table shows it (``fmt``: rate, us, ms, mbps, cpu, ratio or text)."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if fmt == "rate":
        return f"{value:,.0f}"
    if fmt == "us":
        return f"{value:,.1f}"
    if fmt == "ms":
        return f"{value:.2f}"
    if fmt == "mbps":
        return f"{value:,.1f}"
    if fmt == "cpu":
        return f"{value:.2f}"
    if fmt == "ratio":
        return f"{value:.2f}"
    return str(value)


def _format_ratio(row: Row) -> str:
    if row.fmt in ("text", "ratio"):
        return ""
    ratio = _ratio(row.ours, row.redis)
    if ratio is None:
        return "-"
    return f"{ratio:.3f}x" if ratio < 0.1 else f"{ratio:.2f}x" if ratio < 10 else f"{ratio:,.0f}x"


def format_table(rows: list[Row]) -> str:
    """The rows as an aligned Markdown table (readable in a terminal and in the README)."""
    header = ["case", "unit", "ours", "channels_redis", "floor", "ours/redis", "budget", "verdict"]
    body = [
        [r.case, r.unit, format_value(r.ours, r.fmt), format_value(r.redis, r.fmt),
         format_value(r.floor, "us" if r.fmt == "us" else r.fmt) if r.floor is not None else "",
         _format_ratio(r), r.budget, r.verdict]
        for r in rows
    ]
    return markdown_table(header, body, numeric={2, 3, 4, 5})


def markdown_table(header: list[str], body: list[list[str]], numeric: set[int]) -> str:
    """Cells as an aligned Markdown table; the ``numeric`` columns are right-aligned."""
    widths = [max(len(line[i]) for line in [header] + body) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        padded = [c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if i in numeric else "-" * (w + 2) for i, w in enumerate(widths)) + "|"
    return "\n".join([line(header), rule] + [line(cells) for cells in body])
