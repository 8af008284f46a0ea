"""The one JSON result schema of every suite, with the state of the machine the numbers came from.

A suite creates a :class:`Record` when it starts (that reads the load average) and calls
:meth:`Record.write` at the end; the file is ``benchmarks/results/<suite>-<UTC start>.json``::

    {
      "schema": "asgi_ipc.benchmarks/1",
      "suite": "compare",                     # the subcommand of ``python -m benchmarks``
      "argv": ["--quick"],                    # its arguments
      "quick": true,                          # a smoke run, not a measurement
      "started_utc": "2026-11-29T10:40:00+00:00", "seconds": 93.1,
      "machine": {
        "cpus": 2, "cpu_model": "...", "platform": "...", "python": "3.11.7",
        "git_revision": "<sha>[-dirty]",
        "load_average_start": [1.0, 1.2, 1.3], "load_average_end": [...],
        "asgi_ipc_fast_path": "on" | "not built" | "off (ASGI_IPC_PURE=1)",
        "versions": {"django": "5.1", ...}    # installed distributions only
      },
      "settings": {...},                      # the suite's resolved options
      "results": {...},                       # the suite's own numbers (see benchmarks/README.md)
      "budgets": [{"id", "what", "budget", "measured", "verdict"}]   # benchmarks/budgets.py
    }
"""

from __future__ import annotations

import datetime
import importlib
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["RESULTS_DIR", "SCHEMA", "Record", "fast_path_state", "machine_state"]

SCHEMA = "asgi_ipc.benchmarks/1"
REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "benchmarks" / "results"
#: distributions whose versions every result records (those not installed are left out)
DISTRIBUTIONS = ("asgi_ipc", "django", "twisted", "autobahn", "msgpack", "posix_ipc", "httptools", "psutil",
                 "channels", "channels-redis", "redis", "daphne", "uvicorn", "uvloop", "gunicorn", "granian",
                 "websockets")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_revision() -> str | None:
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if rev.returncode != 0:
        return None
    return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def fast_path_state() -> str:
    """Whether the layer runs its optional C fast path (it falls back to pure Python)."""
    if os.environ.get("ASGI_IPC_PURE") == "1":
        return "off (ASGI_IPC_PURE=1)"
    try:
        importlib.import_module("asgi_ipc._fastpath")
    except ImportError:
        return "not built"
    return "on"


def _versions() -> dict[str, str]:
    found = {}
    for dist in DISTRIBUTIONS:
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine_state() -> dict[str, Any]:
    """Where and with what the numbers are taken (the load average is the current one)."""
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "git_revision": _git_revision(),
        "load_average_start": _load(),
        "asgi_ipc_fast_path": fast_path_state(),
        "versions": _versions(),
    }


class Record:
    """One run of one suite: the machine's state at the start, then :meth:`write` at the end."""

    def __init__(self, suite: str, argv: list[str] | None, quick: bool = False) -> None:
        self.suite = suite
        self.argv = list(argv or [])
        self.quick = quick
        self.started = datetime.datetime.now(datetime.timezone.utc)
        self._t0 = time.monotonic()
        self.machine = machine_state()

    def headline(self) -> str:
        """One line naming the machine and its load, to print before the numbers."""
        m = self.machine
        return (f"{self.suite} at {(m['git_revision'] or 'unknown')[:12]}, Python {m['python']}, {m['cpus']} CPUs "
                f"({m['cpu_model']}), load average {m['load_average_start']}, asgi_ipc fast path: "
                f"{m['asgi_ipc_fast_path']}")

    def write(self, results: Any, settings: dict[str, Any] | None = None,
              budgets: list[dict[str, Any]] | None = None, directory: Path | None = None,
              path: Path | None = None) -> Path:
        """Write the JSON file (see the module docstring) and return its path: ``path`` if given,
        else ``<directory or benchmarks/results>/<suite>-<UTC start>.json``."""
        machine = dict(self.machine, load_average_end=_load())
        out = {
            "schema": SCHEMA,
            "suite": self.suite,
            "argv": self.argv,
            "quick": self.quick,
            "started_utc": self.started.isoformat(timespec="seconds"),
            "seconds": round(time.monotonic() - self._t0, 1),
            "machine": machine,
            "settings": settings or {},
            "results": results,
            "budgets": budgets or [],
        }
        if path is None:
            directory = directory or RESULTS_DIR
            path = directory / f"{self.suite}-{self.started.strftime('%Y%m%dT%H%M%SZ')}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=2, default=str) + "\n", encoding="utf-8")
        return path
