"""Helpers for tests that run real supervisor processes: output capture and bounded waits."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import psutil

REPO = Path(__file__).resolve().parents[2]


def wait_for(predicate: Callable[[], object], timeout: float = 20.0, what: str = "condition") -> object:
    """Poll ``predicate`` every 50 ms until it is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


class Supervised:
    """A supervisor subprocess whose merged output is collected line by line."""

    def __init__(self, argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None):
        full_env = dict(os.environ, PYTHONUNBUFFERED="1", NO_COLOR="1")
        full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), full_env.get("PYTHONPATH")]))
        full_env.update(env or {})
        self.process = subprocess.Popen(
            argv, cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        self.lines: list[str] = []
        self._queue: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_line(self, needle: str, timeout: float = 30.0, after: int = 0) -> str:
        """Wait for an output line containing ``needle`` (searching from line number ``after``)."""
        def found() -> str | None:
            return next((line for line in self.lines[after:] if needle in line), None)

        try:
            return wait_for(found, timeout, f"output line {needle!r}")  # type: ignore[return-value]
        except AssertionError:
            raise AssertionError(f"no line containing {needle!r} within {timeout} s; output:\n{self.output}")

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        code = self.process.wait(timeout)
        self._reader.join(5)
        return code

    def kill_everything(self) -> None:
        """Finalizer: kill the supervisor's whole session (children run in their own groups)."""
        procs = self.descendants()
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for proc in procs:
            try:
                proc.kill()
            except psutil.Error:
                pass
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            pass
        psutil.wait_procs(procs, timeout=5)


def python() -> str:
    return sys.executable
