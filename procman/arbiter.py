"""The supervisor's I/O loop: carries out :mod:`procman.policy`'s actions, feeds it what the OS says.

Theory of operation (after gunicorn's arbiter):

- Every decision - restart backoff, boot failure, reload, heartbeat timeouts, memory limits,
  stops - is :class:`procman.policy.Policy`'s, a pure object driven by events and a clock. This
  module is the shell around it: processes, pipes, signals, the control socket, ``status``.
- Signal handlers only enqueue the signal and wake the loop (a self-pipe). Everything happens in
  :meth:`Arbiter.run`'s loop, which waits (for the policy's :meth:`~procman.policy.Policy.timeout`)
  on the wake pipe, the children's output pipes, their heartbeat pipes and the control socket
  (heartbeat messages become policy events as they arrive), then:

  1. hands queued signals to the policy (one ``handle_<name>`` method per signal),
  2. asks the site's health check, reaps dead children and reports each exit to the policy,
  3. tells the policy that time passed (:meth:`~procman.policy.Policy.tick`), which answers with
     the spawns, signals, memory samples and log lines due now, or with the end of a stop.

- A child's output is held back until it reports ready (or dies), so a boot that fails shows its
  traceback once, and children that all fail the same way show it only once.
"""

from __future__ import annotations

import os
import queue
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from . import exitcodes
from .heartbeat import ENV_FD, ENV_SUPERVISOR_PID, HeartbeatReader
from .logstream import LineSplitter, LogStream
from .policy import (
    Action, AllReady, Exit, Log, MeasureMemory, Policy, ReleaseOutput, Role, SendSignal, Spawn,
)

__all__ = ["Role", "Child", "Arbiter"]

HOLD_LINES = 1000

_HANDLED_SIGNALS = ("HUP", "INT", "QUIT", "TERM", "TTIN", "TTOU", "CHLD")


@dataclass
class Child:
    """A running child process and its pipes (what the policy knows of it is ``Policy.children``)."""

    name: str
    process: subprocess.Popen
    output: LineSplitter
    beats: HeartbeatReader | None
    #: Output of a child that has not reported ready yet, with the time of each line: shown once
    #: it is ready (or crashed), and only once for children that all fail to boot the same way.
    held: list[tuple[time.struct_time, str]] | None = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid


class Arbiter:
    """Runs ``roles`` until stopped; :meth:`run` returns the process exit code.

    :param roles: what to run (each role's ``count`` is its desired size; TTIN/TTOU change it).
    :param log: the shared log stream.
    :param graceful_timeout: seconds a graceful stop may take before SIGKILL.
    :param heartbeat_timeout: a ready child silent this long is aborted (SIGABRT, so Python's
        faulthandler prints where it hung) then killed.
    :param boot_timeout: the same for a child not ready this long after spawning.
    :param max_memory: RSS in bytes above which a recyclable child is replaced (None: no limit).
    :param on_ready: called once, when every initial child has reported ready.
    :param on_tick: called every loop iteration (systemd watchdog pings).
    :param status_extra: returns extra sections for ``status`` (the layer's statistics).
    :param health_check: returns why the whole site cannot go on (e.g. its layer segment vanished),
        or None; asked every tick and before a child's failure is blamed on the child.
    :param on_child_exit: called as ``(name, pid, why)`` for every child reaped, at once (the
        site fails the dead worker's unfinished requests: :mod:`procman.inflight`).
    """

    #: Forks the workers from a preloaded zygote (a :class:`procman.forkserver.ForkServer`, set
    #: by :func:`procman.site.run_site`); None: every child is started with ``Popen``.
    forkserver: Any = None

    def __init__(
        self,
        roles: list[Role],
        log: LogStream,
        *,
        graceful_timeout: float = 30.0,
        heartbeat_timeout: float = 30.0,
        boot_timeout: float = 60.0,
        max_memory: int | None = None,
        on_ready: Callable[[], None] | None = None,
        on_tick: Callable[[], None] | None = None,
        status_extra: Callable[[], dict[str, Any]] | None = None,
        health_check: Callable[[], str | None] | None = None,
        on_child_exit: Callable[[str, int, str], None] | None = None,
    ) -> None:
        self.policy = Policy(roles, graceful_timeout=graceful_timeout, heartbeat_timeout=heartbeat_timeout,
                             boot_timeout=boot_timeout, max_memory=max_memory, clock=time.monotonic)
        self.log = log
        self.on_ready = on_ready
        self.on_tick = on_tick
        self.status_extra = status_extra
        self.health_check = health_check
        self.on_child_exit = on_child_exit
        #: Live children by pid.
        self.children: dict[int, Child] = {}
        self.started = time.time()
        self.signals: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.selector.register(self._wake_r, selectors.EVENT_READ, ("wake", None))
        for role in roles:
            log.reserve(f"{role.name}.{role.count}")

    # ---------------------------------------------------------------- setup -------------------

    def watch_fd(self, fileobj: Any, on_readable: Callable[[], None]) -> None:
        """Also wait on ``fileobj`` (e.g. the control socket) and call ``on_readable`` when ready."""
        self.selector.register(fileobj, selectors.EVENT_READ, ("extra", on_readable))

    def _install_signals(self) -> None:
        for name in _HANDLED_SIGNALS:
            signal.signal(getattr(signal, f"SIG{name}"), self._enqueue_signal)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)

    def _restore_signals(self) -> None:
        signal.set_wakeup_fd(-1)
        for name in _HANDLED_SIGNALS:
            signal.signal(getattr(signal, f"SIG{name}"), signal.SIG_DFL)

    def _enqueue_signal(self, signum: int, _frame: Any) -> None:
        # Handlers only enqueue; the wakeup fd already woke the loop.
        if signum != signal.SIGCHLD:
            self.signals.put(signal.Signals(signum).name[3:])

    # ---------------------------------------------------------------- main loop ---------------

    def run(self) -> int:
        """Supervise until stopped; returns the exit code (see :mod:`procman.exitcodes`)."""
        self._install_signals()
        try:
            self.log.info(f"supervisor pid {os.getpid()}")
            self._apply(self.policy.start())
            while True:
                self._wait(self.policy.timeout())
                while not self.signals.empty():
                    self._apply(self.policy.signal(self.signals.get()))
                self._check_health()
                self._reap()
                if self.on_tick:
                    self.on_tick()  # systemd watchdog pings continue during a stop
                code = self._apply(self.policy.tick())
                if code is not None:
                    return code
        finally:
            self._kill_all()
            self._restore_signals()
            self.selector.close()
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _apply(self, actions: list[Action]) -> int | None:
        """Carry out the policy's ``actions`` in order; returns the exit code if one is :class:`Exit`."""
        for action in actions:
            if isinstance(action, Log):
                self.log.info(action.text)
            elif isinstance(action, SendSignal):
                child = self.children.get(action.pid)
                if child is not None:
                    try:
                        child.process.send_signal(action.signum)  # a no-op once it was reaped
                    except ProcessLookupError:
                        pass
            elif isinstance(action, Spawn):
                if self.policy.stopping:
                    continue  # an earlier spawn of this batch failed: the run is stopping fast
                self._spawn(action.role, action.index)
            elif isinstance(action, ReleaseOutput):
                child = self.children.get(action.pid)
                if child is not None:
                    self._release(child, show=action.show)
            elif isinstance(action, MeasureMemory):
                self._measure_memory(action.pid)
            elif isinstance(action, AllReady):
                if self.on_ready:
                    self.on_ready()
            elif isinstance(action, Exit):
                return action.code
            else:
                raise TypeError(f"unknown policy action {action!r}")
        return None

    def _wait(self, timeout: float) -> None:
        for key, _ in self.selector.select(timeout):
            kind, target = key.data
            if kind == "wake":
                try:
                    while os.read(self._wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
            elif kind == "output":
                self._pump_output(target)
            elif kind == "beats":
                self._pump_beats(target)
            elif kind == "extra":
                target()

    # ---------------------------------------------------------------- children ----------------

    def _spawn(self, role: Role, index: int) -> None:
        beat_r, beat_w = os.pipe2(os.O_CLOEXEC)
        env = dict(os.environ)
        env.update(role.env)
        env.update(
            {
                "PYTHONUNBUFFERED": "1",
                "PROCMAN_ROLE": role.name,
                "PROCMAN_INDEX": str(index),
                ENV_SUPERVISOR_PID: str(os.getpid()),
                ENV_FD: str(beat_w),
            }
        )
        argv = [arg.replace("{index}", str(index)) for arg in role.argv]
        # A worker is forked from the preloaded zygote when the site has one (procman.forkserver);
        # anything else, or a zygote that cannot serve this generation, is started with Popen.
        forked = None if self.forkserver is None else self.forkserver.spawn(argv, env, beat_w, self.policy.generation)
        try:
            process = forked or subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=(*role.pass_fds, beat_w),
                env=env,
                process_group=0,  # Ctrl-C reaches only the supervisor, which decides
            )
        except OSError as exc:
            os.close(beat_r)
            os.close(beat_w)
            self._apply(self.policy.spawn_failed(role, index, str(exc)))
            return
        os.close(beat_w)
        beats = HeartbeatReader(beat_r) if role.heartbeat else None
        if beats is None:
            os.close(beat_r)
        os.set_blocking(process.stdout.fileno(), False)
        child = Child(f"{role.name}.{index}", process, LineSplitter(), beats)
        self.children[process.pid] = child
        self.selector.register(process.stdout, selectors.EVENT_READ, ("output", child))
        if beats is not None:
            self.selector.register(beats.fd, selectors.EVENT_READ, ("beats", child))
        self._apply(self.policy.spawned(role, index, process.pid))

    def _pump_output(self, child: Child, final: bool = False) -> None:
        stream = child.process.stdout
        if stream is None or stream.closed:
            return
        while True:
            try:
                data = os.read(stream.fileno(), 65536)
            except BlockingIOError:
                break
            if not data:
                final = True
                break
            for line in child.output.feed(data):
                self._emit(child, line)
        if final:
            for line in child.output.flush():
                self._emit(child, line)
            try:
                self.selector.unregister(stream)
            except (KeyError, ValueError):
                pass
            stream.close()

    def _emit(self, child: Child, line: str) -> None:
        if child.held is None:
            self.log.line(child.name, line)
            return
        child.held.append((time.localtime(), line))
        if len(child.held) > HOLD_LINES:
            self._release(child)  # a chatty boot: show it as it goes

    def _release(self, child: Child, show: bool = True) -> None:
        """Stop holding ``child``'s output back; write what was held unless ``show`` is False."""
        held, child.held = child.held, None
        if show:
            for when, line in held or []:
                self.log.line(child.name, line, when)

    def _pump_beats(self, child: Child) -> None:
        if child.beats is None:
            return
        for event in child.beats.read():
            if event.kind == "ready":
                self._apply(self.policy.ready_reported(child.pid))
            elif event.kind == "retire":
                self._apply(self.policy.retire_requested(child.pid, event.text))
            elif event.kind == "booterror":
                self._apply(self.policy.boot_error_reported(child.pid, event.text))
            else:
                self._apply(self.policy.beat(child.pid, event.requests))
        if child.beats.eof:
            self._forget_beats(child)

    def _forget_beats(self, child: Child) -> None:
        if child.beats is not None and child.beats.fd >= 0:
            try:
                self.selector.unregister(child.beats.fd)
            except (KeyError, ValueError):
                pass
            child.beats.close()

    def _reap(self) -> None:
        for pid, child in list(self.children.items()):
            code = child.process.poll()
            if code is None:
                continue
            self._pump_output(child, final=True)
            if child.beats is not None and child.beats.fd >= 0:
                self._pump_beats(child)
                self._forget_beats(child)
            if self.on_child_exit is not None:
                self.on_child_exit(child.name, pid, exitcodes.describe(code))
            actions = self.policy.exited(pid, code)
            self._apply(actions)  # its held output is released (or dropped) while it is still known
            del self.children[pid]
        if self.forkserver is not None:
            self._reap_strays()

    def _reap_strays(self, most: int = 64) -> None:
        """Reap orphans that were re-parented to us and have exited.

        With the fork server the supervisor is a child subreaper (:mod:`procman.forkserver`), so
        a process a worker started and left behind when it died becomes our child; without this
        it would stay a zombie until the supervisor stops. Only exited processes we did not start
        are reaped: ``waitid(WNOWAIT)`` peeks first, and our own children (the roles' processes
        and the zygote) are left to their ``poll()``, which must see their exit status. A peek
        that finds one of ours ends this turn (it is reaped at the next one, then the rest).
        """
        ours = set(self.children)
        zygote = getattr(self.forkserver, "process", None)
        if zygote is not None:
            ours.add(zygote.pid)
        for _ in range(most):
            try:
                found = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if found is None or found.si_pid in ours:
                return
            try:
                os.waitpid(found.si_pid, os.WNOHANG)
            except ChildProcessError:
                return

    def _measure_memory(self, pid: int) -> None:
        import psutil

        try:
            rss = psutil.Process(pid).memory_info().rss
        except psutil.Error:
            return
        self._apply(self.policy.memory_sample(pid, rss))

    def _kill_all(self) -> None:
        """Last resort on the way out (also after an exception): nothing may outlive us."""
        for child in self.children.values():
            try:
                child.process.kill()
            except ProcessLookupError:
                pass
        for child in self.children.values():
            try:
                child.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            self._pump_output(child, final=True)
            self._release(child)
            if child.beats is not None:
                child.beats.close()
        self.children.clear()

    def _check_health(self) -> None:
        if self.health_check is None or self.policy.stopping:
            return
        problem = self.health_check()
        if problem:
            self.fail(problem)

    def fail(self, reason: str, exit_code: int = exitcodes.FAILURE) -> None:
        """Stop the run gracefully because of ``reason``; :meth:`run` then returns ``exit_code``."""
        self._apply(self.policy.fail(reason, exit_code))

    # ---------------------------------------------------------------- control -----------------

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one control-socket request (``status``, ``reload``, ``stop`` [``fast``])."""
        if request.get("command") == "status":
            return {"ok": True, **self.status()}
        reply, actions = self.policy.control(request)
        self._apply(actions)
        if request.get("command") == "stop":
            reply["pid"] = os.getpid()
        return reply

    # ---------------------------------------------------------------- status ------------------

    def status(self) -> dict[str, Any]:
        """A JSON-able picture of the supervisor and its children (what ``procman status`` shows)."""
        import psutil

        policy = self.policy
        now_mono, now = policy.clock(), time.time()
        processes = []
        for child in sorted(policy.children.values(), key=lambda c: (c.role.stop_order, c.role.name, c.index)):
            slot = policy.slots.get((child.role.name, child.index))
            entry: dict[str, Any] = {
                "name": child.name,
                "role": child.role.name,
                "index": child.index,
                "pid": child.pid,
                "state": child.state,
                "generation": child.generation,
                "uptime": round(now_mono - child.started, 1),
                "restarts": slot.restarts if slot else 0,
                "last_heartbeat": round(now_mono - child.last_beat, 1) if child.role.heartbeat else None,
                "requests": child.requests,
                "rss": None,
                "cpu_percent": None,
                "cpu_seconds": None,
            }
            try:
                proc = psutil.Process(child.pid)
                with proc.oneshot():
                    entry["rss"] = proc.memory_info().rss
                    times = proc.cpu_times()
                    entry["cpu_seconds"] = round(times.user + times.system, 2)
                    alive = max(now - proc.create_time(), 1e-3)
                    entry["cpu_percent"] = round(100 * entry["cpu_seconds"] / alive, 1)
            except psutil.Error:
                pass
            processes.append(entry)
        me = psutil.Process()
        result: dict[str, Any] = {
            "supervisor": {
                "pid": os.getpid(),
                "uptime": round(now - self.started, 1),
                "ready": policy.ready,
                "stopping": policy.stopping,
                "generation": policy.generation,
                "rss": me.memory_info().rss,
                "desired": {role.name: role.count for role in policy.roles},
                "reload": policy.reload_state,
            },
            "processes": processes,
        }
        if self.status_extra:
            result.update(self.status_extra())
        return result
