"""The supervisor's decisions, with no I/O: events and a clock in, actions out.

Theory of operation (after gunicorn's arbiter, shaped like h11: the core knows nothing of I/O):

- :class:`Policy` holds what the supervisor knows - each child's state (:class:`ChildState`), each
  slot's restart history (:class:`Slot`), the generation, the reload and the stop under way - and
  never touches a process, a pipe or a signal handler. Time comes from an injected ``clock``.
- Every event is one method that returns the actions it calls for, in order: a child was spawned
  (:meth:`Policy.spawned`) or could not be (:meth:`~Policy.spawn_failed`), reported ready, beat,
  asked to retire or reported a boot error, exited with a code; a signal or control request came;
  a memory sample came back; the site's health check failed; time passed (:meth:`~Policy.tick`).
- Actions are plain data (:class:`Spawn`, :class:`SendSignal`, :class:`Log`,
  :class:`ReleaseOutput`, :class:`MeasureMemory`, :class:`AllReady`, :class:`Exit`);
  :class:`procman.arbiter.Arbiter` carries them out and turns what the OS tells it back into events.
  Tests drive the policy in memory with a fake clock (``tests/procman/test_policy.py``).

The decisions:

- Desired state is data (``Role.count``, each child's ``retiring`` reason), never a chain of
  events: a rolling reload just marks the current children as retiring; reconciliation
  (every :meth:`~Policy.tick`) then starts new ones and stops each old one once its replacement
  reported ready (new before old).
- A child that exits with ``BOOT_ERROR`` before it was ready stops the whole run with that code
  (unless it was a reload's new child: then the reload is abandoned and the old children stay);
  other children that were booting and fail the same way do not repeat the traceback.
  Any other unexpected exit is restarted after an exponential backoff (``BACKOFF_START`` doubling
  to ``BACKOFF_MAX``, plus up to 10 % jitter, reset once a child stayed up ``STABLE_AFTER`` seconds).
- A child silent for ``heartbeat_timeout`` (or not ready that long after spawning) gets SIGABRT
  (Python's faulthandler prints its stack), then SIGKILL ``KILL_AFTER_ABORT`` seconds later.
- Every ``MEMORY_CHECK_EVERY`` seconds the ready recyclable children are measured; one over
  ``max_memory`` retires (new before old), as does one that asks to (``--max-requests``).
- Stop: graceful stops roles in ``stop_order`` (interfaces first, so in-flight requests still find
  workers) with SIGTERM, and SIGKILLs whatever is left at ``graceful_timeout``; fast stop SIGKILLs
  everything at once. :class:`Exit` comes once no child is left.
"""

from __future__ import annotations

import random
import signal
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Union

from . import exitcodes

__all__ = [
    "Role", "ChildState", "Slot", "Policy",
    "Action", "Spawn", "SendSignal", "Log", "ReleaseOutput", "MeasureMemory", "AllReady", "Exit",
    "TICK", "BACKOFF_START", "BACKOFF_MAX", "STABLE_AFTER", "KILL_AFTER_ABORT", "MEMORY_CHECK_EVERY",
]

#: Longest sleep of the supervisor's loop when nothing is due sooner.
TICK = 1.0
#: First restart delay of a crashed child; it doubles with each crash in a row up to ``BACKOFF_MAX``.
BACKOFF_START = 0.1
BACKOFF_MAX = 30.0
#: A child that stayed ready this long before dying starts its slot's backoff afresh.
STABLE_AFTER = 10.0
#: Seconds between SIGABRT to a hung child and SIGKILL.
KILL_AFTER_ABORT = 2.0
#: Seconds between two memory samples of the recyclable children (``max_memory``).
MEMORY_CHECK_EVERY = 2.0
#: The loop's sleep while a stop is under way.
STOP_POLL = 0.1


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


# ---------------------------------------------------------------- actions --------------------------


@dataclass(frozen=True)
class Spawn:
    """Start child ``index`` of ``role``; report the outcome with :meth:`Policy.spawned` or
    :meth:`Policy.spawn_failed`. Skipped once :attr:`Policy.stopping` is set (an earlier spawn of
    the same batch failed and began a fast stop)."""

    role: Role
    index: int


@dataclass(frozen=True)
class SendSignal:
    """Send ``signum`` to child ``pid`` (nothing if it is already gone)."""

    pid: int
    signum: int


@dataclass(frozen=True)
class Log:
    """Write ``text`` as a supervisor line of the log."""

    text: str


@dataclass(frozen=True)
class ReleaseOutput:
    """Stop holding back child ``pid``'s output; write what was held only if ``show``."""

    pid: int
    show: bool = True


@dataclass(frozen=True)
class MeasureMemory:
    """Measure child ``pid``'s RSS and report it with :meth:`Policy.memory_sample`."""

    pid: int


@dataclass(frozen=True)
class AllReady:
    """Every initial child reported ready (comes once)."""


@dataclass(frozen=True)
class Exit:
    """The stop is over (no child left): the supervisor exits with ``code``."""

    code: int


Action = Union[Spawn, SendSignal, Log, ReleaseOutput, MeasureMemory, AllReady, Exit]


# ---------------------------------------------------------------- state ----------------------------


@dataclass
class ChildState:
    """What the supervisor knows about one running child (times are the policy's clock)."""

    role: Role
    index: int
    pid: int
    generation: int
    started: float
    last_beat: float
    ready_at: float | None = None
    requests: int | None = None
    retiring: str | None = None  # why it is being replaced (reload, max-memory, max-requests)
    stop_sent: float | None = None
    abort_sent: float | None = None
    boot_error: str = ""

    @property
    def name(self) -> str:
        return f"{self.role.name}.{self.index}"

    @property
    def state(self) -> str:
        """``booting``, ``ready``, ``retiring (why)`` or ``stopping`` (what ``procman status`` shows)."""
        if self.stop_sent is not None:
            return "stopping"
        if self.retiring:
            return f"retiring ({self.retiring})"
        return "ready" if self.ready_at is not None else "booting"


@dataclass
class Slot:
    """The restart history of one ``role.index`` slot (it outlives the children in it)."""

    restarts: int = 0
    failures: int = 0  # crashes in a row (reset after a stable run): the backoff's exponent
    not_before: float = 0.0  # no spawn into this slot before this time


# ---------------------------------------------------------------- the policy -----------------------


class Policy:
    """The supervisor's decisions for ``roles``; every event method returns the actions to take.

    :param roles: what to run; each ``count`` is the desired size (TTIN/TTOU change it in place).
    :param graceful_timeout: seconds a graceful stop may take before SIGKILL.
    :param heartbeat_timeout: a ready child silent this long is aborted, then killed.
    :param boot_timeout: a child not ready this long after spawning is aborted, then killed (a
        Django boot on a loaded machine takes seconds; a short heartbeat timeout must not cut it).
    :param max_memory: RSS in bytes above which a recyclable child is replaced (None: no limit).
    :param clock: monotonic seconds (``time.monotonic``; tests pass a fake one).
    :param jitter: returns a number in [0, 1) that spreads restarts of children that died together.
    """

    def __init__(
        self,
        roles: list[Role],
        *,
        graceful_timeout: float = 30.0,
        heartbeat_timeout: float = 30.0,
        boot_timeout: float = 60.0,
        max_memory: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        names = [role.name for role in roles]
        if len(set(names)) != len(names):
            raise ValueError(f"role names must be unique, got {names}")
        self.roles = roles
        self.graceful_timeout = graceful_timeout
        self.heartbeat_timeout = heartbeat_timeout
        self.boot_timeout = boot_timeout
        self.max_memory = max_memory
        self.clock = clock
        self.jitter = jitter
        #: Live children by pid, in the order they were spawned.
        self.children: dict[int, ChildState] = {}
        self.slots: dict[tuple[str, int], Slot] = {}
        self.generation = 1
        self.ready = False
        self.stopping: str | None = None  # None, "graceful" or "fast"
        self.stop_deadline = 0.0
        self.exit_code = exitcodes.OK
        #: The last reload and how it ended (``procman reload --wait`` polls it through ``status``).
        self.reload_state: dict[str, Any] | None = None
        self._boot_error = ""
        self._last_memory_check = 0.0

    def slot(self, role_name: str, index: int) -> Slot:
        """The restart history of slot ``role_name.index`` (created empty on first use)."""
        return self.slots.setdefault((role_name, index), Slot())

    def timeout(self) -> float:
        """Seconds the loop may sleep before the next thing is due: ``TICK``, the end of a restart
        backoff, or ``STOP_POLL`` while stopping."""
        if self.stopping:
            return STOP_POLL
        now = self.clock()
        due = min((slot.not_before for slot in self.slots.values() if slot.not_before > now), default=now + TICK)
        return max(0.0, min(TICK, due - now))

    # ---------------------------------------------------------------- time --------------------

    def start(self) -> list[Action]:
        """The run begins: spawn the initial children."""
        return self._reconcile()

    def tick(self) -> list[Action]:
        """Time passed (every turn of the loop): advance a stop, or abort silent children, sample
        memory, reconcile each role with its desired size, and notice readiness and a finished
        reload."""
        if self.stopping:
            return self._advance_stop()
        return [*self._murder_silent(), *self._check_memory(), *self._reconcile(),
                *self._check_ready(), *self._check_reload()]

    # ---------------------------------------------------------------- children ----------------

    def spawned(self, role: Role, index: int, pid: int) -> list[Action]:
        """Child ``role.index`` was started as ``pid``."""
        now = self.clock()
        child = ChildState(role, index, pid, self.generation, now, last_beat=now)
        self.children[pid] = child
        actions: list[Action] = []
        if not role.heartbeat:
            child.ready_at = now  # it cannot say when it is ready: it is as soon as it runs
            actions.append(ReleaseOutput(pid))
        slot = self.slot(role.name, index)
        if slot.restarts or slot.failures:
            actions.append(Log(f"started {child.name} (pid {pid}, restart #{slot.restarts})"))
        return actions

    def spawn_failed(self, role: Role, index: int, error: str) -> list[Action]:
        """Child ``role.index`` could not be started (``error``): the supervisor itself is failing,
        so everything stops fast with exit code 1."""
        self.exit_code = exitcodes.FAILURE
        return [Log(f"cannot start {role.name}.{index}: {error}; stopping"), *self._begin_stop("fast")]

    def ready_reported(self, pid: int) -> list[Action]:
        """Child ``pid`` reported ready: its held-back output is shown."""
        child = self._heard_from(pid)
        if child is None or child.ready_at is not None:
            return []
        child.ready_at = child.last_beat
        return [ReleaseOutput(pid)]

    def beat(self, pid: int, requests: int | None = None) -> list[Action]:
        """Child ``pid`` is alive (``requests``: how many it served, if it counts)."""
        child = self._heard_from(pid)
        if child is not None and requests is not None:
            child.requests = requests
        return []

    def retire_requested(self, pid: int, reason: str) -> list[Action]:
        """Child ``pid`` asks to be replaced (``--max-requests``); honoured for recyclable roles."""
        child = self._heard_from(pid)
        if child is None or not child.role.recyclable or child.retiring:
            return []
        child.retiring = reason or "asked to retire"
        return [Log(f"{child.name} retiring ({child.retiring}); starting its replacement")]

    def boot_error_reported(self, pid: int, text: str) -> list[Action]:
        """Child ``pid`` says why it cannot boot (it exits with ``BOOT_ERROR`` next)."""
        child = self._heard_from(pid)
        if child is not None:
            child.boot_error = text
        return []

    def _heard_from(self, pid: int) -> ChildState | None:
        child = self.children.get(pid)
        if child is not None:
            child.last_beat = self.clock()
        return child

    def exited(self, pid: int, code: int) -> list[Action]:
        """Child ``pid`` exited with ``code`` (a ``Popen.returncode``: negative for a signal)."""
        child = self.children.pop(pid, None)
        if child is None:
            return []
        now = self.clock()
        if child.ready_at is None and self.exit_code == exitcodes.BOOT_ERROR:
            # The run is already stopping for a boot failure: one traceback is enough. Children
            # that were still booting are stopped; their output is shown only if they failed
            # for another reason.
            different = bool(child.boot_error) and child.boot_error != self._boot_error
            if child.boot_error and not different:
                return [ReleaseOutput(pid, show=False), Log(f"{child.name} failed to boot the same way")]
            return [ReleaseOutput(pid, show=different)]
        actions: list[Action] = [ReleaseOutput(pid)]
        if child.stop_sent is not None or self.stopping:
            if not self.stopping:
                actions.append(Log(f"{child.name} stopped ({exitcodes.describe(code)})"))
            return actions
        if code == exitcodes.BOOT_ERROR and child.ready_at is None:
            reason = child.boot_error or "see its output above"
            old = [c for c in self.children.values() if c.role is child.role and c.retiring]
            if old and child.generation > min(c.generation for c in old):
                return actions + self._abandon_reload(child, reason, old)
            actions.append(Log(f"{child.name} failed to boot: {reason}"))
            actions.append(Log(f"stopping: restarting it would fail the same way (exit code {code})"))
            self.exit_code = exitcodes.BOOT_ERROR
            self._boot_error = child.boot_error
            return actions + self._begin_stop("graceful")
        if child.retiring:
            # Its replacement is already running or starting: nothing to restart.
            actions.append(Log(f"retiring {child.name} (pid {pid}) exited early: {exitcodes.describe(code)}"))
            return actions
        slot = self.slot(child.role.name, child.index)
        if child.ready_at is not None and now - child.ready_at >= STABLE_AFTER:
            slot.failures = 0
        slot.failures += 1
        slot.restarts += 1
        delay = min(BACKOFF_START * 2 ** (slot.failures - 1), BACKOFF_MAX)
        delay *= 1 + self.jitter() * 0.1  # spread restarts of children that died together
        slot.not_before = now + delay
        why = "hung, killed" if child.abort_sent is not None else exitcodes.describe(code)
        actions.append(Log(f"{child.name} (pid {pid}) died: {why}; restarting in {delay:.1f} s"))
        return actions

    def _abandon_reload(self, child: ChildState, reason: str, old: list[ChildState]) -> list[Action]:
        actions: list[Action] = [Log(f"reload failed: new {child.name} could not boot: {reason}")]
        self._end_reload("failed", f"new {child.name} could not boot: {reason}; the old processes still serve")
        actions.append(Log("keeping the old processes; fix the error and reload again"))
        for other in list(self.children.values()):
            if other.role is child.role and other.generation == child.generation and not other.retiring:
                actions += self._stop_child(other)
        for previous in old:
            previous.retiring = None
        self.slot(child.role.name, child.index).not_before = 0.0
        return actions

    def _stop_child(self, child: ChildState, signum: int = signal.SIGTERM) -> list[Action]:
        if child.stop_sent is None:
            child.stop_sent = self.clock()
        return [SendSignal(child.pid, signum)]

    def _murder_silent(self) -> list[Action]:
        now = self.clock()
        actions: list[Action] = []
        for child in self.children.values():
            if child.abort_sent is not None:
                if now - child.abort_sent >= KILL_AFTER_ABORT:
                    actions.append(SendSignal(child.pid, signal.SIGKILL))
                continue
            if not child.role.heartbeat or child.stop_sent is not None:
                continue
            booting = child.ready_at is None
            limit = self.boot_timeout if booting else self.heartbeat_timeout
            if now - child.last_beat > limit:
                what = "was not ready within" if booting else "sent no heartbeat for"
                actions.append(Log(
                    f"{child.name} (pid {child.pid}) {what} {limit:g} s: "
                    "aborting it (its stack follows if it can print one)"
                ))
                child.abort_sent = now
                actions.append(SendSignal(child.pid, signal.SIGABRT))
        return actions

    def _check_memory(self) -> list[Action]:
        if self.max_memory is None:
            return []
        now = self.clock()
        if now - self._last_memory_check < MEMORY_CHECK_EVERY:
            return []
        self._last_memory_check = now
        return [MeasureMemory(child.pid) for child in self.children.values() if self._measurable(child)]

    @staticmethod
    def _measurable(child: ChildState) -> bool:
        return (child.role.recyclable and not child.retiring and child.ready_at is not None
                and child.stop_sent is None)

    def memory_sample(self, pid: int, rss: int) -> list[Action]:
        """Child ``pid`` uses ``rss`` bytes: over ``max_memory``, it retires (new before old)."""
        child = self.children.get(pid)
        if child is None or self.max_memory is None or not self._measurable(child) or rss <= self.max_memory:
            return []
        child.retiring = f"RSS {rss // 2**20} MiB over --max-memory {self.max_memory // 2**20} MiB"
        return [Log(f"{child.name} retiring ({child.retiring}); starting its replacement")]

    def _reconcile(self) -> list[Action]:
        now = self.clock()
        actions: list[Action] = []
        for role in self.roles:
            mine = [c for c in self.children.values() if c.role is role]
            current = {c.index: c for c in mine if not c.retiring and c.stop_sent is None}
            for index in range(1, role.count + 1):
                if index not in current and now >= self.slot(role.name, index).not_before:
                    actions.append(Spawn(role, index))
            for index, child in current.items():
                if index > role.count:
                    actions += self._stop_child(child)
            for child in mine:
                if not child.retiring or child.stop_sent is not None:
                    continue
                successor = current.get(child.index)
                if child.index > role.count or (successor is not None and successor.ready_at is not None):
                    actions += self._stop_child(child)
        return actions

    def _check_reload(self) -> list[Action]:
        """A reload is done when no process retires for it and every reloadable slot is served by a
        ready process of the reload's generation (or a later one)."""
        if not self.reload_state or self.reload_state["state"] != "in progress":
            return []
        generation = self.reload_state["generation"]
        if any(c.retiring == "reload" for c in self.children.values()):
            return []
        for role in self.roles:
            if role.reload and sum(1 for c in self.children.values() if c.role is role and c.generation >= generation
                                   and c.ready_at is not None and c.stop_sent is None) < role.count:
                return []
        self._end_reload("done", f"generation {generation} serves")
        return [Log(f"reload done: every worker now runs generation {generation}")]

    def _end_reload(self, state: str, message: str) -> None:
        if self.reload_state and self.reload_state["state"] == "in progress":
            self.reload_state.update(state=state, message=message)

    def _check_ready(self) -> list[Action]:
        if self.ready:
            return []
        if all(
            sum(1 for c in self.children.values() if c.role is role and c.ready_at is not None) >= role.count
            for role in self.roles
        ):
            self.ready = True
            return [AllReady()]
        return []

    # ---------------------------------------------------------------- signals -----------------

    def signal(self, name: str) -> list[Action]:
        """Signal ``name`` (``HUP``, ``TERM``...) or an in-process request of the same name arrived:
        dispatched to ``handle_<name>``; an unknown name is logged and ignored."""
        handler = getattr(self, f"handle_{name.lower()}", None)
        if handler is None:
            return [Log(f"ignoring unknown request {name!r}")]
        return handler()

    def handle_hup(self) -> list[Action]:
        """SIGHUP / ``procman reload``: rolling restart of reloadable roles, new before old; roles
        with ``hup_on_reload`` get SIGHUP instead (interfaces re-read their certificate)."""
        if self.stopping:
            return []
        self.generation += 1
        actions: list[Action] = []
        marked = 0
        for child in list(self.children.values()):
            if child.role.hup_on_reload and child.stop_sent is None and child.ready_at is not None:
                actions.append(SendSignal(child.pid, signal.SIGHUP))
            if not child.role.reload or child.stop_sent is not None:
                continue
            if child.ready_at is None:
                # Still booting (e.g. from a previous reload) with code that may be outdated:
                # it serves nobody yet, so stop it now instead of waiting for it.
                actions += self._stop_child(child)
            elif not child.retiring:
                child.retiring = "reload"
                marked += 1
        self.reload_state = {"generation": self.generation, "state": "in progress", "message": ""}
        actions.append(Log(f"reload: replacing {marked} process(es), new ones first (generation {self.generation})"))
        return actions

    def handle_term(self) -> list[Action]:
        """SIGTERM: graceful stop, bounded by ``graceful_timeout``; a second TERM changes nothing."""
        return self._begin_stop("graceful")

    def handle_int(self) -> list[Action]:
        """SIGINT (Ctrl-C): first one is a graceful stop, a second one is a fast stop."""
        return self._begin_stop("fast" if self.stopping else "graceful")

    def handle_quit(self) -> list[Action]:
        """SIGQUIT: fast stop (children are killed at once)."""
        return self._begin_stop("fast")

    def handle_ttin(self) -> list[Action]:
        """SIGTTIN: one more process in each scalable role (the worker pool; the Daphne servers in
        the ASGI 3 mode)."""
        actions: list[Action] = []
        for role in self.roles:
            if role.scalable:
                role.count += 1
                actions.append(Log(f"scale: {role.name} -> {role.count}"))
        return actions

    def handle_ttou(self) -> list[Action]:
        """SIGTTOU: one fewer process in each scalable role, never below one."""
        actions: list[Action] = []
        for role in self.roles:
            if role.scalable and role.count > 1:
                role.count -= 1
                actions.append(Log(f"scale: {role.name} -> {role.count}"))
        return actions

    # ---------------------------------------------------------------- control -----------------

    def control(self, request: dict[str, Any]) -> tuple[dict[str, Any], list[Action]]:
        """A control-socket request other than ``status``: ``reload``, ``stop`` [``fast``].

        Returns the answer and the actions; a reload is started at once, so the generation
        answered is this reload's.
        """
        command = request.get("command")
        if command == "reload":
            if self.stopping:
                return {"ok": False, "error": "the site is stopping"}, []
            actions = self.handle_hup()
            return ({"ok": True, "message": "reload started (new processes first, then the old ones stop)",
                     "generation": self.generation}, actions)
        if command == "stop":
            fast = bool(request.get("fast"))
            actions = self.handle_quit() if fast else self.handle_term()
            return {"ok": True, "message": "stopping" + (" fast" if fast else "")}, actions
        return {"ok": False, "error": f"unknown command {command!r}; use status, reload or stop"}, []

    # ---------------------------------------------------------------- stopping ----------------

    def fail(self, reason: str, exit_code: int = exitcodes.FAILURE) -> list[Action]:
        """The site cannot go on (``reason``, e.g. its layer segment vanished): stop gracefully and
        exit with ``exit_code``. Ignored once a stop is under way."""
        if self.stopping:
            return []
        self.exit_code = exit_code
        return [Log(f"error: {reason}"), *self._begin_stop("graceful")]

    def _begin_stop(self, how: str) -> list[Action]:
        if self.stopping == "fast" or self.stopping == how:
            return []
        self.stopping = how
        self._end_reload("failed", "the site is stopping")
        self.stop_deadline = self.clock() + self.graceful_timeout
        if how == "fast":
            actions: list[Action] = [Log("fast stop: killing all processes")]
            for child in self.children.values():
                actions += self._stop_child(child, signal.SIGKILL)
            return actions
        return [Log(f"graceful stop (up to {self.graceful_timeout:g} s; Ctrl-C again to force)")]

    def _advance_stop(self) -> list[Action]:
        if not self.children:
            return [Exit(self.exit_code)]
        now = self.clock()
        actions: list[Action] = []
        if self.stopping == "fast" or now >= self.stop_deadline:
            if self.stopping != "fast":
                names = ", ".join(c.name for c in self.children.values())
                actions.append(Log(f"graceful stop timed out; killing {names}"))
                self.stopping = "fast"
            for child in self.children.values():
                actions += self._stop_child(child, signal.SIGKILL)
            return actions
        first = min(c.role.stop_order for c in self.children.values())
        for child in self.children.values():
            if child.role.stop_order == first and child.stop_sent is None:
                actions += self._stop_child(child)
        return actions
