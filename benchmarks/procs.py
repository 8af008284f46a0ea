"""Running one benchmark case as a set of spawned processes, started together, bounded in time.

A case is a list of :class:`ChildSpec`: which module and function (a *role*) each child runs, with
which keyword arguments. :func:`run_children` spawns them (``multiprocessing`` "spawn" context, so
every child builds its own layer instance from a picklable config), waits until every child has
called :meth:`RoleContext.ready` (its setup is done), releases them all at once with one Event, and
collects what each role returned. A child that raises, or a case that does not finish within its
timeout, fails the whole case with :class:`CaseFailed` carrying the child's traceback; surviving
children are terminated, then killed, so nothing is left running.

Roles are ``fn(ctx: RoleContext, **kwargs) -> dict``; a role may be ``async def`` (it is then run
with ``asyncio.run``). The returned dict must be picklable.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import multiprocessing
import queue
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

__all__ = ["IDLE_SETTLE", "CaseFailed", "ChildSpec", "RoleContext", "collect_results", "run_children",
           "stop_processes"]

_SETUP_TIMEOUT = 60.0

# seconds an idle receiver gets, after the start signal, to enter its blocking receive before its
# CPU is measured (setup and the first call are not idle time)
IDLE_SETTLE = 0.25


class CaseFailed(RuntimeError):
    """A benchmark case could not complete: a child raised, hung, or died."""


@dataclass(frozen=True)
class ChildSpec:
    """One process of a case: ``module.role(ctx, **kwargs)`` under the display name ``name``."""

    name: str
    module: str
    role: str
    kwargs: dict[str, Any] = field(default_factory=dict)


class RoleContext:
    """What a role gets besides its own arguments.

    - ``layer_config``: keyword arguments to build (attach) the layer under test;
    - ``peers``: a queue shared by all children of the case, for roles that talk to each other
      (e.g. group members telling the sender a round was delivered);
    - :meth:`ready`: call once setup is done; returns when every child is ready (the start signal);
    - :meth:`wait_round`: for a coordinating role, wait until peers report a round done.
    """

    def __init__(
        self,
        name: str,
        layer_config: dict[str, Any],
        start: Any,
        reports: Any,
        peers: Any,
    ) -> None:
        self.name = name
        self.layer_config = layer_config
        self.peers = peers
        self._start = start
        self._reports = reports

    def ready(self, timeout: float = _SETUP_TIMEOUT) -> None:
        """Report setup done and block until the parent releases all children together."""
        self._reports.put(("ready", self.name, None))
        if not self._start.wait(timeout):
            raise CaseFailed(f"{self.name}: no start signal within {timeout}s")

    def wait_round(self, round_no: int, processes: int, timeout: float) -> float | None:
        """Wait for ``("done", process, round_no, time)`` from ``processes`` peers on ``peers``.

        Returns the latest of their times, or None if they did not all report within ``timeout`` s.
        Reports for other rounds (a late one from a round that timed out) are dropped.
        """
        done: list[float] = []
        limit = time.monotonic() + timeout
        while len(done) < processes:
            left = limit - time.monotonic()
            if left <= 0:
                return None
            try:
                _, _, reported_round, at = self.peers.get(timeout=left)
            except queue.Empty:
                return None
            if reported_round == round_no:
                done.append(at)
        return max(done)


def _child_main(
    spec: ChildSpec, layer_config: dict[str, Any], start: Any, reports: Any, peers: Any
) -> None:
    ctx = RoleContext(spec.name, layer_config, start, reports, peers)
    try:
        role = getattr(importlib.import_module(spec.module), spec.role)
        result = role(ctx, **spec.kwargs)
        if inspect.iscoroutine(result):
            result = asyncio.run(result)
        reports.put(("result", spec.name, result))
    except BaseException:  # noqa: B902 - every failure must reach the parent, with its traceback
        reports.put(("error", spec.name, traceback.format_exc()))


def stop_processes(processes: list[Any], grace: float) -> None:
    """Join the started ``multiprocessing`` children for up to ``grace`` s each, then terminate,
    then kill what is left (each step bounded), so none outlives its caller."""
    processes = [p for p in processes if p.pid is not None]
    for proc in processes:
        proc.join(timeout=grace)
    for proc in processes:
        if proc.is_alive():
            proc.terminate()
            proc.join(timeout=3)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=3)


def run_children(
    specs: list[ChildSpec], layer_config: dict[str, Any], timeout: float
) -> dict[str, dict[str, Any]]:
    """Run one case; return ``{child name: what its role returned}``.

    ``timeout`` bounds the time from the start signal until every child has reported. Raises
    :class:`CaseFailed` if a child fails, dies, or the case runs out of time.
    """
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"child names must be unique, got {names}")
    mp = multiprocessing.get_context("spawn")
    start, reports, peers = mp.Event(), mp.Queue(), mp.Queue()
    processes = [
        mp.Process(
            target=_child_main,
            args=(spec, layer_config, start, reports, peers),
            name=f"bench-{spec.name}",
            daemon=True,
        )
        for spec in specs
    ]
    finished = False
    try:
        for proc in processes:
            proc.start()
        _collect(reports, processes, names, "ready", _SETUP_TIMEOUT)
        start.set()
        results = _collect(reports, processes, names, "result", timeout)
        finished = True
        return results
    finally:
        start.set()  # never leave a child waiting for a start that will not come
        # children that reported are exiting by themselves; after a failure, stop the rest now
        stop_processes(processes, grace=5.0 if finished else 0.5)
        for q in (reports, peers):
            q.close()
            q.cancel_join_thread()


def _collect(
    reports: Any, processes: list[Any], names: list[str], kind: str, timeout: float
) -> dict[str, Any]:
    pending = set(names)
    got: dict[str, Any] = {}
    deadline = time.monotonic() + timeout
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            raise CaseFailed(f"timed out after {timeout:.0f}s waiting for {kind} from {sorted(pending)}")
        try:
            what, name, value = reports.get(timeout=min(left, 0.5))
        except queue.Empty:
            dead = [p.name for p in processes if p.exitcode not in (None, 0)]
            if dead:
                raise CaseFailed(f"child process(es) {dead} died while waiting for {kind}") from None
            continue
        if what == "error":
            raise CaseFailed(f"{name} failed:\n{value}")
        if what == kind:
            pending.discard(name)
            got[name] = value
    return got


def collect_results(processes: list[Any], results: Any, timeout: float) -> list[Any]:
    """One item per process from the queue ``results`` within ``timeout`` s in all.

    Raises ``queue.Empty`` naming how many answered if they do not; the caller stops the
    processes (:func:`stop_processes`)."""
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    for _ in processes:
        try:
            got.append(results.get(timeout=max(0.1, deadline - time.monotonic())))
        except queue.Empty:
            raise queue.Empty(f"only {len(got)} of {len(processes)} processes reported within {timeout:.0f} s") \
                from None
    return got
