"""The one way the suites start a server, measure it and stop it: a set of session leaders and
their descendants, their CPU and PSS over the whole process tree (``benchmarks/cpu_time.py``), and a
bounded stop (SIGTERM, then SIGKILL of the process group, then of any descendant left)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil

from benchmarks.cpu_time import tree_cpu_seconds, tree_pids, tree_pss_bytes

__all__ = ["Running", "spawn"]


def spawn(argv: list[str], env: dict[str, str], cwd: Path, log: IO[bytes] | int, **kwargs: Any) -> subprocess.Popen:
    """Start ``argv`` as the leader of its own session (so a stop reaches its whole group), stdin
    closed, stdout and stderr to ``log`` (a file, or ``subprocess.DEVNULL``)."""
    return subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True, **kwargs)


@dataclass
class Running:
    """A started server: its processes (each the leader of its own session, see :func:`spawn`),
    port and log."""

    name: str
    port: int
    log_path: Path
    procs: list[subprocess.Popen] = field(default_factory=list)
    prefix: str | None = None  # ours: the layer prefix (its segment must be gone after stop)

    def alive(self) -> bool:
        return all(proc.poll() is None for proc in self.procs)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def server_pids(self) -> list[int]:
        """Every process of the contender (leaders and their descendants) right now."""
        return tree_pids(proc.pid for proc in self.procs)

    def cpu_seconds(self) -> float:
        """CPU seconds used so far by every process of the contender (the exited ones are not
        counted, so sample while it runs)."""
        return tree_cpu_seconds(proc.pid for proc in self.procs)

    def pss_bytes(self) -> int:
        """The PSS of every process of the contender, summed (what the whole site costs)."""
        return sum(tree_pss_bytes(proc.pid for proc in self.procs).values())

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM every leader, wait at most ``timeout``, SIGKILL what is left (descendants too).

        A descendant that outlives its leader (one that ignores the leader's stop) gets what is
        left of ``timeout`` (5 s at most, 0.1 s at least) to exit by itself before its SIGKILL."""
        everyone = self.server_pids()
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(10)
        # descendants the leaders did not take with them (bounded by the same deadline, then SIGKILL)
        leftovers = []
        for pid in everyone:
            try:
                leftovers.append(psutil.Process(pid))
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(leftovers, timeout=min(5.0, max(0.1, deadline - time.monotonic())))
        for proc in alive:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=5)
