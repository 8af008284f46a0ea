"""The supervisor's main loop: start children, watch them, reconcile, reload, stop.

Theory of operation (after gunicorn's arbiter):

- Signal handlers only enqueue the signal and wake the loop (a self-pipe). Everything happens in
  :meth:`Arbiter.run`'s loop, which waits (at most ``TICK`` seconds) on the wake pipe, the children's
  output pipes, their heartbeat pipes and the control socket, then:

  1. dispatches queued signals to ``handle_<name>`` (one method per signal, documented below),
  2. reaps dead children and decides what their exit means (:mod:`procman.exitcodes`),
  3. kills children that missed their heartbeat, and retires those over ``max_memory``,
  4. reconciles: for every role, as many live current children as desired (spawning into empty
     slots whose backoff has elapsed, stopping surplus ones), and old children whose replacement is
     ready get SIGTERM.

- Desired state is data (``Role.count``, each child's ``retiring`` flag), never a chain of events:
  a rolling reload just marks the current workers as retiring; reconciliation then starts new ones
  and stops each old one once its replacement reported ready (new before old).
- A child that exits with ``BOOT_ERROR`` before it was ready stops the whole run with that code
  (unless it was a reload's new child: then the reload is abandoned and the old children stay).
  Any other unexpected exit is restarted after an exponential backoff (0.1 s doubling to 30 s,
  reset once a child has stayed up for ``STABLE_AFTER`` seconds).
- Stop: graceful stops roles in ``stop_order`` (interfaces first, so in-flight requests still find
  workers), each with SIGTERM, and SIGKILLs whatever is left at ``graceful_timeout``; fast stop
  SIGKILLs everything at once.
"""

from __future__ import annotations

import os
import queue
import random
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from . import exitcodes
from .heartbeat import ENV_FD, ENV_SUPERVISOR_PID, HeartbeatReader
from .logstream import LineSplitter, LogStream

__all__ = ["Role", "Child", "Arbiter"]

TICK = 1.0
BACKOFF_START = 0.1
BACKOFF_MAX = 30.0
STABLE_AFTER = 10.0
KILL_AFTER_ABORT = 2.0
MEMORY_CHECK_EVERY = 2.0
HOLD_LINES = 1000

_HANDLED_SIGNALS = ("HUP", "INT", "QUIT", "TERM", "TTIN", "TTOU", "CHLD")


@dataclass
class Role:
    """A kind of child and how many of it to run.

    :ivar name: ``interface``, ``worker``, ``worker-thumbnail``...; children are ``name.N``.
    :ivar argv: command line of each child; ``{index}`` in an argument is replaced by N.
    :ivar count: desired number of children.
    :ivar pass_fds: file descriptors the children inherit (listening sockets).
    :ivar env: extra environment variables.
    :ivar reload: restarted by HUP / ``procman reload`` (new before old).
    :ivar hup_on_reload: not restarted by a reload but sent SIGHUP (interfaces re-read their TLS
        certificate and key, keeping their connections).
    :ivar scalable: changed by TTIN / TTOU.
    :ivar recyclable: replaced (new before old) when over ``max_memory`` or when it asks to retire.
    :ivar heartbeat: children report ready/beat on the heartbeat pipe; if False a child counts as
        ready when spawned and is never killed for silence.
    :ivar stop_order: lower stops first on a graceful stop.
    """

    name: str
    argv: list[str]
    count: int = 1
    pass_fds: tuple[int, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    reload: bool = False
    hup_on_reload: bool = False
    scalable: bool = False
    recyclable: bool = False
    heartbeat: bool = True
    stop_order: int = 0


@dataclass
class Child:
    """A running child process and what the supervisor knows about it."""

    role: Role
    index: int
    process: subprocess.Popen
    generation: int
    started: float
    output: LineSplitter
    beats: HeartbeatReader | None
    ready_at: float | None = None
    last_beat: float = 0.0
    requests: int | None = None
    retiring: str | None = None  # why it is being replaced (reload, max-memory, max-requests)
    stop_sent: float | None = None
    abort_sent: float | None = None
    boot_error: str = ""
    #: Output of a child that has not reported ready yet, with the time of each line: shown once
    #: it is ready (or crashed), and only once for children that all fail to boot the same way.
    held: list[tuple[time.struct_time, str]] | None = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.role.name}.{self.index}"

    @property
    def pid(self) -> int:
        return self.process.pid


@dataclass
class _Slot:
    restarts: int = 0
    failures: int = 0
    not_before: float = 0.0


class Arbiter:
    """Runs ``roles`` until stopped; :meth:`run` returns the process exit code.

    :param roles: what to run (each role's ``count`` is its desired size; TTIN/TTOU change it).
    :param log: the shared log stream.
    :param graceful_timeout: seconds a graceful stop may take before SIGKILL.
    :param heartbeat_timeout: a child silent this long (or not ready this long after spawning)
        is aborted (SIGABRT, so Python's faulthandler prints where it hung) then killed.
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
        max_memory: int | None = None,
        on_ready: Callable[[], None] | None = None,
        on_tick: Callable[[], None] | None = None,
        status_extra: Callable[[], dict[str, Any]] | None = None,
        health_check: Callable[[], str | None] | None = None,
        on_child_exit: Callable[[str, int, str], None] | None = None,
    ) -> None:
        names = [role.name for role in roles]
        if len(set(names)) != len(names):
            raise ValueError(f"role names must be unique, got {names}")
        self.roles = roles
        self.log = log
        self.graceful_timeout = graceful_timeout
        self.heartbeat_timeout = heartbeat_timeout
        self.max_memory = max_memory
        self.on_ready = on_ready
        self.on_tick = on_tick
        self.status_extra = status_extra
        self.health_check = health_check
        self.on_child_exit = on_child_exit
        self.children: list[Child] = []
        self.slots: dict[tuple[str, int], _Slot] = {}
        self.generation = 1
        self.started = time.time()
        self.ready = False
        self.stopping: str | None = None  # None, "graceful" or "fast"
        self.stop_deadline = 0.0
        self.exit_code = exitcodes.OK
        self.signals: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.selector.register(self._wake_r, selectors.EVENT_READ, ("wake", None))
        self._last_memory_check = 0.0
        self._boot_error = ""
        #: The last reload and how it ended (``procman reload --wait`` polls it through ``status``).
        self.reload_state: dict[str, Any] | None = None
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

    def request(self, name: str) -> None:
        """Queue a signal's action from inside the process (the control socket uses this)."""
        self.signals.put(name)
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass

    # ---------------------------------------------------------------- main loop ---------------

    def run(self) -> int:
        """Supervise until stopped; returns the exit code (see :mod:`procman.exitcodes`)."""
        self._install_signals()
        try:
            self.log.info(f"supervisor pid {os.getpid()}")
            self._reconcile()
            while True:
                self._wait(self._timeout())
                while not self.signals.empty():
                    self._dispatch(self.signals.get())
                self._check_health()
                self._reap()
                if self.on_tick:
                    self.on_tick()  # systemd watchdog pings continue during a stop
                if self.stopping:
                    if self._advance_stop():
                        break
                    continue
                self._murder_silent()
                self._check_memory()
                self._reconcile()
                self._check_ready()
                self._check_reload()
        finally:
            self._kill_all()
            self._restore_signals()
            self.selector.close()
            os.close(self._wake_r)
            os.close(self._wake_w)
        return self.exit_code

    def _timeout(self) -> float:
        """Sleep until the next thing that is due: a TICK, or the end of a restart backoff."""
        if self.stopping:
            return 0.1
        now = time.monotonic()
        due = min((slot.not_before for slot in self.slots.values() if slot.not_before > now), default=now + TICK)
        return max(0.0, min(TICK, due - now))

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

    def _dispatch(self, name: str) -> None:
        handler = getattr(self, f"handle_{name.lower()}", None)
        if handler is None:
            self.log.info(f"ignoring unknown request {name!r}")
            return
        handler()

    # ---------------------------------------------------------------- signals -----------------

    def handle_hup(self) -> None:
        """SIGHUP / ``procman reload``: rolling restart of reloadable roles, new before old; the
        listening sockets stay open throughout."""
        if self.stopping:
            return
        self.generation += 1
        marked = 0
        for child in self.children:
            if child.role.hup_on_reload and child.stop_sent is None and child.ready_at is not None:
                try:
                    child.process.send_signal(signal.SIGHUP)
                except ProcessLookupError:
                    pass
            if not child.role.reload or child.stop_sent is not None:
                continue
            if child.ready_at is None:
                # Still booting (e.g. from a previous reload) with code that may be outdated:
                # it serves nobody yet, so stop it now instead of waiting for it.
                self._stop_child(child)
            elif not child.retiring:
                child.retiring = "reload"
                marked += 1
        self.reload_state = {"generation": self.generation, "state": "in progress", "message": ""}
        self.log.info(f"reload: replacing {marked} process(es), new ones first (generation {self.generation})")

    def handle_term(self) -> None:
        """SIGTERM: graceful stop, bounded by ``graceful_timeout``; a second TERM changes nothing."""
        self._begin_stop("graceful")

    def handle_int(self) -> None:
        """SIGINT (Ctrl-C): first one is a graceful stop, a second one is a fast stop."""
        self._begin_stop("fast" if self.stopping else "graceful")

    def handle_quit(self) -> None:
        """SIGQUIT: fast stop (children are killed at once)."""
        self._begin_stop("fast")

    def handle_ttin(self) -> None:
        """SIGTTIN: one more process in each scalable role (the worker pool; the Daphne servers in
        the ASGI 3 mode)."""
        for role in self.roles:
            if role.scalable:
                role.count += 1
                self.log.info(f"scale: {role.name} -> {role.count}")

    def handle_ttou(self) -> None:
        """SIGTTOU: one fewer process in each scalable role, never below one."""
        for role in self.roles:
            if role.scalable and role.count > 1:
                role.count -= 1
                self.log.info(f"scale: {role.name} -> {role.count}")

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
        forked = None if self.forkserver is None else self.forkserver.spawn(argv, env, beat_w, self.generation)
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
            self.log.info(f"cannot start {role.name}.{index}: {exc}; stopping")
            self.exit_code = exitcodes.FAILURE
            self._begin_stop("fast")
            return
        os.close(beat_w)
        now = time.monotonic()
        beats = HeartbeatReader(beat_r) if role.heartbeat else None
        if beats is None:
            os.close(beat_r)
        child = Child(role, index, process, self.generation, now, LineSplitter(), beats, last_beat=now)
        if not role.heartbeat:
            child.ready_at = now
            child.held = None
        os.set_blocking(process.stdout.fileno(), False)
        self.selector.register(process.stdout, selectors.EVENT_READ, ("output", child))
        if beats is not None:
            self.selector.register(beats.fd, selectors.EVENT_READ, ("beats", child))
        self.children.append(child)
        slot = self.slots.setdefault((role.name, index), _Slot())
        if slot.restarts or slot.failures:
            self.log.info(f"started {child.name} (pid {child.pid}, restart #{slot.restarts})")

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
        now = time.monotonic()
        for event in child.beats.read():
            child.last_beat = now
            if event.kind == "ready" and child.ready_at is None:
                child.ready_at = now
                self._release(child)
            elif event.kind == "beat" and event.requests is not None:
                child.requests = event.requests
            elif event.kind == "retire" and child.role.recyclable and not child.retiring:
                child.retiring = event.text or "asked to retire"
                self.log.info(f"{child.name} retiring ({child.retiring}); starting its replacement")
            elif event.kind == "booterror":
                child.boot_error = event.text
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
        for child in list(self.children):
            code = child.process.poll()
            if code is None:
                continue
            self._pump_output(child, final=True)
            if child.beats is not None and child.beats.fd >= 0:
                self._pump_beats(child)
                self._forget_beats(child)
            self.children.remove(child)
            if self.on_child_exit is not None:
                self.on_child_exit(child.name, child.pid, exitcodes.describe(code))
            self._on_exit(child, code)

    def _on_exit(self, child: Child, code: int) -> None:
        now = time.monotonic()
        slot = self.slots.setdefault((child.role.name, child.index), _Slot())
        if child.ready_at is None and self.exit_code == exitcodes.BOOT_ERROR:
            # The run is already stopping for a boot failure: one traceback is enough. Children
            # that were still booting are stopped; their output is shown only if they failed
            # for another reason.
            different = bool(child.boot_error) and child.boot_error != self._boot_error
            self._release(child, show=different)
            if child.boot_error and not different:
                self.log.info(f"{child.name} failed to boot the same way")
            return
        self._release(child)
        if child.stop_sent is not None or self.stopping:
            if not self.stopping:
                self.log.info(f"{child.name} stopped ({exitcodes.describe(code)})")
            return
        if code == exitcodes.BOOT_ERROR and child.ready_at is None:
            reason = child.boot_error or "see its output above"
            old = [c for c in self.children if c.role is child.role and c.retiring]
            if old and child.generation > min(c.generation for c in old):
                self._abandon_reload(child, reason, old)
                return
            self.log.info(f"{child.name} failed to boot: {reason}")
            self.log.info(f"stopping: restarting it would fail the same way (exit code {code})")
            self.exit_code = exitcodes.BOOT_ERROR
            self._boot_error = child.boot_error
            self._begin_stop("graceful")
            return
        if child.retiring:
            # Its replacement is already running or starting: nothing to restart.
            self.log.info(f"retiring {child.name} (pid {child.pid}) exited early: {exitcodes.describe(code)}")
            return
        if child.ready_at is not None and now - child.ready_at >= STABLE_AFTER:
            slot.failures = 0
        slot.failures += 1
        slot.restarts += 1
        delay = min(BACKOFF_START * 2 ** (slot.failures - 1), BACKOFF_MAX)
        delay *= 1 + random.random() * 0.1  # spread restarts of children that died together
        slot.not_before = now + delay
        why = "hung, killed" if child.abort_sent is not None else exitcodes.describe(code)
        self.log.info(f"{child.name} (pid {child.pid}) died: {why}; restarting in {delay:.1f} s")

    def _abandon_reload(self, child: Child, reason: str, old: list[Child]) -> None:
        self.log.info(f"reload failed: new {child.name} could not boot: {reason}")
        self._end_reload("failed", f"new {child.name} could not boot: {reason}; the old processes still serve")
        self.log.info("keeping the old processes; fix the error and reload again")
        for other in self.children:
            if other.role is child.role and other.generation == child.generation and not other.retiring:
                self._stop_child(other)
        for previous in old:
            previous.retiring = None
        slot = self.slots.setdefault((child.role.name, child.index), _Slot())
        slot.not_before = 0.0

    def _stop_child(self, child: Child, sig: int = signal.SIGTERM) -> None:
        if child.stop_sent is None:
            child.stop_sent = time.monotonic()
        try:
            child.process.send_signal(sig)
        except ProcessLookupError:
            pass

    def _murder_silent(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.abort_sent is not None:
                if now - child.abort_sent >= KILL_AFTER_ABORT:
                    child.process.kill()
                continue
            if not child.role.heartbeat or child.stop_sent is not None:
                continue
            if now - child.last_beat > self.heartbeat_timeout:
                what = "was not ready within" if child.ready_at is None else "sent no heartbeat for"
                self.log.info(
                    f"{child.name} (pid {child.pid}) {what} {self.heartbeat_timeout:g} s: "
                    "aborting it (its stack follows if it can print one)"
                )
                child.abort_sent = now
                try:
                    child.process.send_signal(signal.SIGABRT)
                except ProcessLookupError:
                    pass

    def _check_memory(self) -> None:
        if self.max_memory is None:
            return
        now = time.monotonic()
        if now - self._last_memory_check < MEMORY_CHECK_EVERY:
            return
        self._last_memory_check = now
        import psutil

        for child in self.children:
            if not child.role.recyclable or child.retiring or child.ready_at is None or child.stop_sent:
                continue
            try:
                rss = psutil.Process(child.pid).memory_info().rss
            except psutil.Error:
                continue
            if rss > self.max_memory:
                child.retiring = f"RSS {rss // 2**20} MiB over --max-memory {self.max_memory // 2**20} MiB"
                self.log.info(f"{child.name} retiring ({child.retiring}); starting its replacement")

    def _reconcile(self) -> None:
        now = time.monotonic()
        for role in self.roles:
            mine = [c for c in self.children if c.role is role]
            current = {c.index: c for c in mine if not c.retiring and c.stop_sent is None}
            for index in range(1, role.count + 1):
                if index in current:
                    continue
                slot = self.slots.setdefault((role.name, index), _Slot())
                if now >= slot.not_before:
                    self._spawn(role, index)
                    if self.stopping:
                        return
            for index, child in current.items():
                if index > role.count:
                    self._stop_child(child)
            for child in mine:
                if not child.retiring or child.stop_sent is not None:
                    continue
                successor = current.get(child.index)
                if child.index > role.count or (successor is not None and successor.ready_at is not None):
                    self._stop_child(child)

    def _check_reload(self) -> None:
        """A reload is done when no process retires for it and every reloadable slot is served by a
        ready process of the reload's generation (or a later one)."""
        if not self.reload_state or self.reload_state["state"] != "in progress":
            return
        generation = self.reload_state["generation"]
        if any(c.retiring == "reload" for c in self.children):
            return
        for role in self.roles:
            if role.reload and sum(1 for c in self.children if c.role is role and c.generation >= generation
                                   and c.ready_at is not None and c.stop_sent is None) < role.count:
                return
        self.log.info(f"reload done: every worker now runs generation {generation}")
        self._end_reload("done", f"generation {generation} serves")

    def _end_reload(self, state: str, message: str) -> None:
        if self.reload_state and self.reload_state["state"] == "in progress":
            self.reload_state.update(state=state, message=message)

    def _check_ready(self) -> None:
        if self.ready:
            return
        if all(
            sum(1 for c in self.children if c.role is role and c.ready_at is not None) >= role.count
            for role in self.roles
        ):
            self.ready = True
            if self.on_ready:
                self.on_ready()

    # ---------------------------------------------------------------- stopping ----------------

    def _begin_stop(self, how: str) -> None:
        if self.stopping == "fast" or self.stopping == how:
            return
        self.stopping = how
        self._end_reload("failed", "the site is stopping")
        self.stop_deadline = time.monotonic() + self.graceful_timeout
        if how == "fast":
            self.log.info("fast stop: killing all processes")
            for child in self.children:
                self._stop_child(child, signal.SIGKILL)
        else:
            self.log.info(f"graceful stop (up to {self.graceful_timeout:g} s; Ctrl-C again to force)")

    def _advance_stop(self) -> bool:
        """Move a stop forward; True once no child is left."""
        if not self.children:
            return True
        now = time.monotonic()
        if self.stopping == "fast" or now >= self.stop_deadline:
            if now >= self.stop_deadline and self.stopping != "fast":
                names = ", ".join(c.name for c in self.children)
                self.log.info(f"graceful stop timed out; killing {names}")
                self.stopping = "fast"
            for child in self.children:
                self._stop_child(child, signal.SIGKILL)
            return False
        first = min(c.role.stop_order for c in self.children)
        for child in self.children:
            if child.role.stop_order == first and child.stop_sent is None:
                self._stop_child(child)
        return False

    def _kill_all(self) -> None:
        """Last resort on the way out (also after an exception): nothing may outlive us."""
        for child in self.children:
            try:
                child.process.kill()
            except ProcessLookupError:
                pass
        for child in self.children:
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
        if self.health_check is None or self.stopping:
            return
        problem = self.health_check()
        if problem:
            self.fail(problem)

    def fail(self, reason: str, exit_code: int = exitcodes.FAILURE) -> None:
        """Stop the run gracefully because of ``reason``; :meth:`run` then returns ``exit_code``."""
        if self.stopping:
            return
        self.log.info(f"error: {reason}")
        self.exit_code = exit_code
        self._begin_stop("graceful")

    # ---------------------------------------------------------------- control -----------------

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one control-socket request (``status``, ``reload``, ``stop`` [``fast``])."""
        command = request.get("command")
        if command == "status":
            return {"ok": True, **self.status()}
        if command == "reload":
            if self.stopping:
                return {"ok": False, "error": "the site is stopping"}
            self.handle_hup()  # at once (we are in the loop), so the generation answered is this reload's
            return {"ok": True, "message": "reload started (new processes first, then the old ones stop)",
                    "generation": self.generation}
        if command == "stop":
            self.request("QUIT" if request.get("fast") else "TERM")
            return {"ok": True, "message": "stopping" + (" fast" if request.get("fast") else ""), "pid": os.getpid()}
        return {"ok": False, "error": f"unknown command {command!r}; use status, reload or stop"}

    # ---------------------------------------------------------------- status ------------------

    def status(self) -> dict[str, Any]:
        """A JSON-able picture of the supervisor and its children (what ``procman status`` shows)."""
        import psutil

        now_mono, now = time.monotonic(), time.time()
        processes = []
        for child in sorted(self.children, key=lambda c: (c.role.stop_order, c.role.name, c.index)):
            entry: dict[str, Any] = {
                "name": child.name,
                "role": child.role.name,
                "index": child.index,
                "pid": child.pid,
                "state": _state(child),
                "generation": child.generation,
                "uptime": round(now_mono - child.started, 1),
                "restarts": self.slots.get((child.role.name, child.index), _Slot()).restarts,
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
                "ready": self.ready,
                "stopping": self.stopping,
                "generation": self.generation,
                "rss": me.memory_info().rss,
                "desired": {role.name: role.count for role in self.roles},
                "reload": self.reload_state,
            },
            "processes": processes,
        }
        if self.status_extra:
            result.update(self.status_extra())
        return result


def _state(child: Child) -> str:
    if child.stop_sent is not None:
        return "stopping"
    if child.retiring:
        return f"retiring ({child.retiring})"
    return "ready" if child.ready_at is not None else "booting"
