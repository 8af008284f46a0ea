"""CPU time used by another process, precisely enough to tell "idle" from "polling".

``psutil``'s ``cpu_times`` counts in clock ticks (10 ms here), too coarse to see a receiver that
wakes briefly a few times per second. Linux keeps nanosecond run time per thread in
``/proc/<pid>/task/<tid>/schedstat`` (first field); :func:`process_cpu_seconds` sums it over the
process's threads and falls back to psutil (user + system) where that file does not exist.
"""

from __future__ import annotations

import os

import psutil

__all__ = ["process_cpu_seconds"]


def process_cpu_seconds(pid: int) -> float:
    """Seconds of CPU the process ``pid`` (all its threads) has used so far.

    Raises ``psutil.NoSuchProcess`` if there is no such process.
    """
    task_dir = f"/proc/{pid}/task"
    try:
        total_ns = 0
        for tid in os.listdir(task_dir):
            try:
                with open(f"{task_dir}/{tid}/schedstat", encoding="ascii") as f:
                    total_ns += int(f.read().split()[0])
            except FileNotFoundError:  # the thread ended between listdir and open
                continue
        return total_ns / 1e9
    except (FileNotFoundError, PermissionError, ValueError, IndexError):
        times = psutil.Process(pid).cpu_times()
        return float(times.user + times.system)
