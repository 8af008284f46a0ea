"""The performance budgets: the one table every suite checks against and every document points to.

Each :class:`Budget` names the suite that measures it, what is measured (usually a ratio against a
baseline measured in the same run, never a timing asserted in a test), the limit and the direction.
The suites call :func:`verdict` / :func:`check`; ``benchmarks/README.md`` holds the table
:func:`markdown_table` renders (a test keeps the two equal); ``docs/design.md`` section 4 points here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["BUDGETS", "Budget", "check", "get", "markdown_table", "verdict"]


@dataclass(frozen=True)
class Budget:
    """``measured <op> limit`` must hold. ``measured`` is in ``unit`` (``x`` for a ratio)."""

    id: str
    suite: str
    what: str
    op: str  # ">=", ">", "<="
    limit: float
    unit: str
    text: str  # the budget as people say it

    def passes(self, measured: float) -> bool:
        """Whether ``measured`` meets this budget."""
        if self.op == ">=":
            return measured >= self.limit
        if self.op == ">":
            return measured > self.limit
        if self.op == "<=":
            return measured <= self.limit
        raise ValueError(f"budget {self.id}: unknown operator {self.op!r}")


BUDGETS: tuple[Budget, ...] = (
    # the channel layer (python -m benchmarks layer)
    Budget("layer.cross_1to1", "layer", "cross-process throughput, 1 producer -> 1 consumer, ~1 KB http.request",
           ">=", 40, "x", ">= 40x channels_redis"),
    Budget("layer.cross_2to2", "layer", "2 producers -> 2 consumers on one channel, against ours 1 -> 1",
           ">", 1.0, "x", "scales above 1 -> 1"),
    Budget("layer.lost_share", "layer", "messages lost in the cross-process cases (and no duplicate at all)",
           "<=", 1e-4, "share", "0 duplicates, lost <= 0.01 %"),
    Budget("layer.rtt_p50", "layer", "round trip between two processes (send, wake, receive, reply), p50, "
           "against the process floor (the same bytes ping-ponged between two processes, no layer)",
           "<=", 1.5, "x", "p50 <= 1.5x the process floor"),
    Budget("layer.rtt_p99", "layer", "round trip p99 against channels_redis's", "<=", 0.1, "x",
           "p99 <= 1/10 of channels_redis"),
    Budget("layer.queued_flat", "layer", "throughput with 10,000 messages queued vs 10", ">=", 0.9, "x",
           ">= 0.9x (flat)"),
    Budget("layer.group_1000_send", "layer", "send_group to 1,000 members (median call), every member got every round",
           "<=", 5.0, "ms", "<= 5 ms and all delivered"),
    Budget("layer.size_512k", "layer", "512 KB messages, MB/s against channels_redis's", ">=", 1.0, "x",
           ">= channels_redis"),
    Budget("layer.idle_cpu", "layer", "CPU of a receiver blocked on an empty channel", "<=", 5.0, "CPU ms/s",
           "<= 5 ms per second (~0)"),
    Budget("channels4.throughput", "layer", "Channels 4 layer API (asgi_ipc.channels), cross-process throughput "
           "against channels_redis (layer --channels4)", ">=", 30, "x", ">= 30x channels_redis"),
    Budget("channels4.rtt", "layer", "Channels 4 layer API, round trip p50 against channels_redis's", "<=", 0.1, "x",
           "<= 1/10 of channels_redis"),
    Budget("channels4.group", "layer", "Channels 4 layer API, group_send to 1,000 members against channels_redis's",
           "<=", 0.1, "x", "<= 1/10 of channels_redis, 0 duplicates"),
    # the whole site (python -m benchmarks compare), ratios measured in one run
    Budget("compare.rps_vs_gunicorn_w4", "compare", "hello view, HTTP/1.1 keep-alive, 2 cores: ours (procman run, "
           "1 interface + 2 workers) requests/s against gunicorn -w 4 (sync WSGI)", ">=", 2.0, "x",
           ">= 2x gunicorn -w 4"),
    Budget("compare.rps_vs_granian_w2", "compare", "hello view requests/s: ours against granian --workers 2 (WSGI), "
           "the same number of worker processes", ">=", 0.7, "x", ">= 0.7x granian --workers 2"),
    Budget("compare.pss_vs_gunicorn_w2", "compare", "whole-site PSS, idle after 200 requests: ours (supervisor + "
           "1 interface + 2 workers) against gunicorn -w 2 (master + 2 workers)", "<=", 1.2, "x",
           "<= 1.2x gunicorn -w 2"),
    Budget("compare.rps_vs_asgi_servers", "compare", "hello view requests/s: ours against the best of uvicorn "
           "--workers 2 and 2 Daphne 4 processes (Django's ASGI handler)", ">", 1.0, "x",
           "more than uvicorn and Daphne"),
    Budget("compare.ws_p99_vs_channels", "compare", "WebSocket broadcast to the group every 50 ms: ours' p99 "
           "delivery latency against Channels 4 + channels_redis + Daphne", "<=", 1.0, "x",
           "p99 below Channels 4 + channels_redis"),
    # one interface process (python -m benchmarks interface)
    Budget("interface.cpu_per_request", "interface", "interface CPU per keep-alive hello request", "<=", 40, "us",
           "<= 40 us"),
    Budget("interface.cpu_per_frame", "interface", "interface CPU per delivered broadcast frame", "<=", 8, "us",
           "<= 8 us"),
    Budget("interface.broadcast_p99", "interface", "broadcast every 50 ms to 1,000 members of one group, one "
           "interface process: p99 delivery (and nothing lost)", "<=", 60, "ms", "p99 <= 60 ms, nothing lost"),
    # the worker (python -m benchmarks worker)
    Budget("worker.dispatch_x_wsgi", "worker", "worker CPU, http.request message -> view -> reply, in process, "
           "against Django's own WSGIHandler on the same view", "<=", 1.5, "x", "<= 1.5x WSGIHandler"),
    # several machines (python -m benchmarks cluster)
    Budget("cluster.rps_ratio", "cluster", "hello view requests/s of one machine with procman run --cluster "
           "against without", ">=", 0.9, "x", ">= 0.9x"),
)

_BY_ID = {b.id: b for b in BUDGETS}
if len(_BY_ID) != len(BUDGETS):
    raise RuntimeError("two budgets share an id")


def get(budget_id: str) -> Budget:
    """The budget named ``budget_id``; ``KeyError`` listing the known ids otherwise."""
    try:
        return _BY_ID[budget_id]
    except KeyError:
        raise KeyError(f"no budget {budget_id!r}; known: {', '.join(_BY_ID)}") from None


def verdict(budget_id: str, measured: float | None, *also: bool) -> str:
    """``PASS``/``FAIL`` for ``measured`` (and every extra condition in ``also``), ``n.a.`` when
    nothing was measured."""
    if measured is None:
        return "n.a."
    return "PASS" if get(budget_id).passes(measured) and all(also) else "FAIL"


def check(budget_id: str, measured: float | None, *also: bool, note: str = "") -> dict[str, Any]:
    """The JSON entry of one budget in a result file: id, what, budget, measured, verdict, note."""
    budget = get(budget_id)
    return {"id": budget.id, "what": budget.what, "budget": budget.text, "limit": f"{budget.op} {budget.limit:g}",
            "unit": budget.unit, "measured": measured, "verdict": verdict(budget_id, measured, *also), "note": note}


def markdown_table() -> str:
    """Every budget as the Markdown table of benchmarks/README.md."""
    lines = ["| id | suite | what | budget |", "|---|---|---|---|"]
    lines += [f"| `{b.id}` | {b.suite} | {b.what} | {b.text} |" for b in BUDGETS]
    return "\n".join(lines)
