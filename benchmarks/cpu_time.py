"""CPU time and memory of other processes and of whole process trees, as the suites measure them.

``psutil``'s ``cpu_times`` counts in clock ticks (10 ms here), too coarse to see a receiver that
wakes briefly a few times per second. Linux keeps nanosecond run time per thread in
``/proc/<pid>/task/<tid>/schedstat`` (first field); :func:`process_cpu_seconds` sums it over the
process's threads and falls back to psutil (user + system) where that file does not exist.

Memory is PSS, not RSS: the pages a process shares with others (the interpreter, Django's code
after a fork) are divided among the processes sharing them, so the PSS of every process of a site
adds up to what the site really costs the machine. :func:`pss_bytes` reads
``/proc/<pid>/smaps_rollup``; :func:`tree_pss_bytes` sums it over a process and its descendants.
"""

from __future__ import annotations

import os
from typing import Iterable

import psutil

__all__ = ["process_cpu_seconds", "pss_bytes", "tree_cpu_seconds", "tree_pids", "tree_pss_bytes"]


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


def tree_pids(roots: Iterable[int]) -> list[int]:
    """``roots`` and all their living descendants (roots that are gone are left out)."""
    pids: list[int] = []
    for root in roots:
        try:
            leader = psutil.Process(root)
            children = leader.children(recursive=True)
        except psutil.NoSuchProcess:
            continue
        pids.append(root)
        pids.extend(child.pid for child in children if child.pid not in pids)
    return pids


def tree_cpu_seconds(roots: Iterable[int]) -> float:
    """CPU seconds used so far by ``roots`` and their living descendants (processes that already
    exited are not counted, so sample while the tree runs)."""
    total = 0.0
    for pid in tree_pids(roots):
        try:
            total += process_cpu_seconds(pid)
        except psutil.NoSuchProcess:
            continue
    return total


def pss_bytes(pid: int) -> int:
    """The proportional set size of ``pid`` in bytes (``Pss:`` of ``/proc/<pid>/smaps_rollup``).

    Raises ``FileNotFoundError`` if the process is gone, ``RuntimeError`` if the kernel gives no
    PSS (Linux older than 4.14, or no permission to read it)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024  # the kernel counts in kB
    except PermissionError as exc:
        raise RuntimeError(f"cannot read the PSS of process {pid}: {exc}") from None
    raise RuntimeError(f"/proc/{pid}/smaps_rollup has no Pss line (Linux >= 4.14 is needed)")


def tree_pss_bytes(roots: Iterable[int]) -> dict[int, int]:
    """``{pid: PSS bytes}`` of ``roots`` and their living descendants (sum the values for the
    whole tree); a process that exits while being read is left out."""
    found = {}
    for pid in tree_pids(roots):
        try:
            found[pid] = pss_bytes(pid)
        except FileNotFoundError:
            continue
    return found
