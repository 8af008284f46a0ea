"""``python -m benchmarks <suite> [--quick] [suite options]``: the one entry point of every suite.

Each suite is a module with ``main(argv) -> int`` (its exit status); ``python -m benchmarks <suite>
--help`` lists its options, and ``python -m benchmarks budgets`` prints the budgets table of
``benchmarks/budgets.py``. See ``benchmarks/README.md``.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: suite -> (module, one line saying what it measures)
SUITES = {
    "layer": ("benchmarks.layer_bench", "the channel layer against channels_redis and the msgpack/process floor"),
    "channels4": ("benchmarks.channels4_bench", "the Channels 4 layers: asgi_ipc.channels, channels_redis, InMemory"),
    "interface": ("benchmarks.interface_bench", "one interface process: HTTP and WebSocket CPU, broadcast latency"),
    "worker": ("benchmarks.worker_bench", "the worker's CPU per request against Django's own WSGIHandler"),
    "site": ("benchmarks.site_bench", "procman demo: start-up, PSS per process, requests/s"),
    "compare": ("benchmarks.site_compare", "the whole site against gunicorn, granian, uvicorn, Daphne, Channels 4"),
    "cluster": ("benchmarks.cluster_bench", "simulated machines: --cluster vs without vs all on Redis; broadcast vs channels_redis"),
}

USAGE = "usage: python -m benchmarks {" + ",".join(SUITES) + ",budgets} [--quick] [suite options]"


def main(argv: list[str] | None = None) -> int:
    """Run the suite named by the first argument with the rest; 2 with a usage message otherwise."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE + "\n\nsuites:\n" + "\n".join(f"  {name:<10} {what}" for name, (_, what) in SUITES.items())
              + "\n  budgets    print the budgets every suite checks (benchmarks/budgets.py)")
        return 0 if argv else 2
    suite, rest = argv[0], argv[1:]
    if suite == "budgets":
        from benchmarks.budgets import markdown_table

        print(markdown_table())
        return 0
    if suite not in SUITES:
        print(f"{USAGE}\nunknown suite {suite!r}: choose one of {', '.join(SUITES)}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUITES[suite][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted: every process this run started has been stopped", file=sys.stderr)
        sys.exit(130)
