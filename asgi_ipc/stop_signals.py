"""What a stop signal means, for every process of the project: the one table and its installer.

Theory of operation
-------------------
Every process we run - the interface server, ``runworker`` and ``rundelay``, and the children
``procman run`` starts (Django workers, Daphne servers, Channels workers, the cluster link) -
answers SIGTERM, SIGINT and SIGQUIT from this table. The supervisor, whose pure policy has
handlers for more signals (HUP, TTIN, TTOU), gives these three the same meaning (tested against
this table); the keeper ignores signals on purpose.

==========  =====================  ==========================
signal      while running          once a stop has begun
==========  =====================  ==========================
SIGTERM     graceful               ignore (no change)
SIGINT      graceful               fast
SIGQUIT     fast                   fast
==========  =====================  ==========================

Why each:

* **SIGTERM** is what a supervisor sends - procman, systemd, ``docker stop``, Kubernetes - to
  say "stop when you can": finish what is in flight, lose nothing. A supervisor that repeats it
  (or a person typing ``kill`` twice) still means the same thing, so a second TERM must not turn a
  graceful stop into dropped requests; a sender that wants an end has SIGKILL (and every
  supervisor here sends it at its own timeout).
* **SIGINT** is Ctrl-C, typed by a person at a terminal. The first asks politely, as TERM does;
  a second one means "I will not wait" and is obeyed at once. So a second Ctrl-C ends any of our
  processes quickly, even one whose consumer is stuck.
* **SIGQUIT** (Ctrl-\\, ``procman stop --fast``) is the explicit "stop now".

*Graceful* and *fast* are each process's own: the interface server closes WebSockets with 1001
and lets responses finish, a worker finishes its consumer. A process that has no fast stop of
its own gets :func:`exit_now`: exit at once with :data:`FAST_EXIT` (130, the status a shell
reports for a process ended by Ctrl-C), which each executable's exit-code table lists.

The decision (:func:`decide`: a signal and whether a stop has begun in, an action out) is pure
and tested in memory. :class:`StopSignals` applies it to one process. Its signal handler only
decides and queues the process's stop: through ``call`` (``reactor.callFromThread``,
``loop.call_soon_threadsafe``) when the process has a loop, or to a small thread of this module
when its threads block in receives (their stop sets an event and wakes the layer, which a
handler must not do itself: ``Event.set`` can deadlock there). The default fast stop runs in the
handler, so it needs no loop to turn: a busy process still ends at once.

Why ``signal.signal`` for asyncio processes too, not ``loop.add_signal_handler``: a handler added
with the latter runs only when the loop turns, so a consumer blocking the loop would keep the
second Ctrl-C from ever being seen. A Python-level handler runs in the main thread between two
bytecodes even then; it hands the graceful stop to the loop with ``call_soon_threadsafe`` (which
wakes it).
"""

from __future__ import annotations

import atexit
import collections
import enum
import functools
import os
import signal
import sys
import threading
import traceback
from typing import Any, Callable, NoReturn

__all__ = ["FAST_EXIT", "StopAction", "StopSignals", "decide", "describe", "exit_now", "leave", "stop_with_parent", "PARENT_PID_ENV", "STOP_SIGNALS"]

#: Exit status of a fast stop that the process carries out with :func:`exit_now` (128 + SIGINT,
#: what a shell reports for a process Ctrl-C ended). Each executable's exit-code table names it.
FAST_EXIT = 130


class StopAction(str, enum.Enum):
    """What a stop signal asks of the process."""

    #: Stop accepting work, finish what is in flight (bounded by the process's own timeout).
    GRACEFUL = "graceful"
    #: Stop now: drop what is in flight.
    FAST = "fast"
    #: Nothing changes (a repeated SIGTERM during a graceful stop).
    IGNORE = "ignore"


#: THE table: (signal, a stop has begun) -> action. See the module docstring for why.
_TABLE: dict[tuple[signal.Signals, bool], StopAction] = {
    (signal.SIGTERM, False): StopAction.GRACEFUL,
    (signal.SIGTERM, True): StopAction.IGNORE,
    (signal.SIGINT, False): StopAction.GRACEFUL,
    (signal.SIGINT, True): StopAction.FAST,
    (signal.SIGQUIT, False): StopAction.FAST,
    (signal.SIGQUIT, True): StopAction.FAST,
}

#: The signals the table covers, in the order they are installed.
STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


def decide(signum: int, stopping: bool) -> StopAction:
    """The action for stop signal ``signum`` when a stop has (``stopping``) or has not begun.

    :raises ValueError: ``signum`` is not one of :data:`STOP_SIGNALS`.
    """
    try:
        return _TABLE[(signal.Signals(signum), bool(stopping))]
    except (KeyError, ValueError):
        raise ValueError(
            f"signal {signum} is not a stop signal; the table covers "
            f"{', '.join(s.name for s in STOP_SIGNALS)}"
        ) from None


def describe(signum: int, action: StopAction) -> str:
    """The one line a process logs when it acts on ``signum`` (what it will do, and how to
    stop at once)."""
    name = signal.Signals(signum).name
    if action is StopAction.GRACEFUL:
        if signum == signal.SIGINT:
            return "interrupted; stopping gracefully (Ctrl-C again to stop at once)"
        return f"{name}: stopping gracefully (Ctrl-C or SIGQUIT stops at once)"
    if action is StopAction.FAST:
        return ("SIGINT during the graceful stop: stopping at once" if signum == signal.SIGINT
                else f"{name}: stopping at once")
    return f"{name} again: already stopping gracefully (Ctrl-C or SIGQUIT stops at once)"


def _write_stderr(line: str) -> None:
    """Write ``line`` to file descriptor 2 with one ``write``: safe in a signal handler (no
    lock, no buffer that the interrupted code may be in the middle of)."""
    try:
        os.write(2, f"{os.path.basename(sys.argv[0] or 'python')}[{os.getpid()}]: {line}\n".encode())
    except OSError:
        pass


def exit_now(code: int = FAST_EXIT, reason: str = "") -> None:
    """The default fast stop: say so on stderr and end the process at once with ``code``
    (``os._exit``: no cleanup runs, as after SIGKILL; the layer repairs what a process killed
    mid-operation leaves, and every segment belongs to the process that created it)."""
    if reason:
        _write_stderr(f"{reason} (exit {code})")
    os._exit(code)


#: Environment variable a process that starts ours may set to its pid: the started process calls
#: :func:`stop_with_parent` with it (the interface server a ``runserver`` or live-server test starts).
PARENT_PID_ENV = "ASGI_IPC_PARENT_PID"


def stop_with_parent(sig: int = signal.SIGTERM, parent: int | None = None) -> None:
    """Ask Linux to send ``sig`` to this process when its parent dies (``PR_SET_PDEATHSIG``).

    A parent killed with SIGKILL cannot stop its children; this makes them stop anyway (``sig``
    takes the process's graceful path, which removes what it created). ``parent`` is the pid of
    the expected parent: if this process's parent is already another one (it died before the
    ``prctl``), ``sig`` is sent now. The kernel signals when the parent's *thread* that started
    this process ends, so a parent must start such children from a thread that lives as long as
    it does (its main thread). Silently does nothing where ``prctl`` is unavailable.
    """
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(sig), 0, 0, 0)  # PR_SET_PDEATHSIG == 1
    except (OSError, AttributeError):
        return
    if parent is not None and os.getppid() != parent:
        os.kill(os.getpid(), sig)


def leave(code: int, *, run_atexit: bool = True) -> NoReturn:
    """End a process whose work is done with ``code``, without the interpreter's teardown of its
    modules (collecting Twisted's and Autobahn's module objects took 0.2-0.5 s of CPU after every
    stop of an interface process, delaying the exit its supervisor or a test waits for).

    ``run_atexit``: run the ``atexit`` handlers first (logging's flush, :mod:`asgi_ipc`'s close of
    any layer left open, the project's own), as a normal exit would; a process forked from one
    that registered them (a fork server's worker) passes False, since they are its parent's.
    stdout and stderr are flushed either way.
    """
    if run_atexit:
        atexit._run_exitfuncs()  # the documented atexit behaviour, run now instead of at finalization
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - nothing more to do on the way out
            pass
    os._exit(code)


class _StopThread:
    """Runs, in a thread of its own, the work a signal handler queued.

    For processes without a loop (threads blocked in receives): their stop often sets a
    ``threading.Event``, and ``Event.set`` in a handler can deadlock (the interrupted main
    thread may hold the event's lock, inside ``Event.wait``). The handler only appends to a
    deque and writes one byte to a pipe; this thread reads it and runs the work."""

    def __init__(self) -> None:
        self._queue: collections.deque[Callable[[], Any] | None] = collections.deque()
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        self._thread = threading.Thread(target=self._run, name="stop-signals", daemon=True)
        self._thread.start()

    def call(self, work: Callable[[], Any] | None) -> None:
        """Queue ``work`` (None: end the thread). Signal-safe."""
        self._queue.append(work)
        try:
            os.write(self._write, b"\0")
        except BlockingIOError:  # the pipe is full of wake-ups the thread has yet to read
            pass

    def _run(self) -> None:
        try:
            while True:
                os.read(self._read, 512)
                while self._queue:
                    work = self._queue.popleft()
                    if work is None:
                        return
                    try:
                        work()
                    except Exception:  # noqa: BLE001 - a failed stop must not end the thread
                        traceback.print_exc()
        finally:
            os.close(self._read)
            os.close(self._write)

    def close(self) -> None:
        """End the thread (after the work already queued)."""
        self.call(None)
        if self._thread is not threading.current_thread():
            self._thread.join(5)


class StopSignals:
    """One process's stop signals: :func:`decide` applied to its own graceful and fast stops.

    The signal handler (:meth:`handle`) only decides and queues; the process's stop runs
    outside it, so it need not be signal-safe.

    :param graceful: begins the graceful stop. Called at most once (the table never asks twice).
    :param fast: stops at once; may be called after ``graceful``. None: :func:`exit_now` with
        ``fast_exit_code``, run in the signal handler itself (so nothing has to turn).
    :param call: hands work to the process's loop, from a signal handler
        (``reactor.callFromThread``, ``loop.call_soon_threadsafe``). None: a thread of this
        module runs it (a process whose threads block in receives: ``graceful`` may then set an
        event or call ``layer.wake()``).
    :param announce: receives the one-line description of each decision (:func:`describe`),
        before ``graceful`` or ``fast`` and in the same place. None: stderr.
    :param fast_exit_code: the exit status of the default fast stop (the executable's own
        table names it; :data:`FAST_EXIT` everywhere today).
    """

    def __init__(
        self,
        graceful: Callable[[], Any],
        fast: Callable[[], Any] | None = None,
        *,
        call: Callable[[Callable[[], Any]], Any] | None = None,
        announce: Callable[[str], Any] | None = None,
        fast_exit_code: int = FAST_EXIT,
    ) -> None:
        self.graceful = graceful
        self.fast = fast
        self.call = call
        self.announce = announce or _write_stderr
        self.fast_exit_code = fast_exit_code
        #: True once a stop signal began a stop (graceful or fast).
        self.stopping = False
        self._previous: dict[int, Any] = {}
        self._thread: _StopThread | None = None

    def handle(self, signum: int, frame: Any = None) -> StopAction:
        """The signal handler: decide, then queue the process's stop. Returns the action."""
        action = decide(signum, self.stopping)
        if action is not StopAction.IGNORE:
            self.stopping = True
        line = describe(signum, action)
        if action is StopAction.FAST and self.fast is None:
            exit_now(self.fast_exit_code, line)  # in the handler: no loop needs to turn
        work = {StopAction.GRACEFUL: self.graceful, StopAction.FAST: self.fast}.get(action)
        call = self.call if self.call is not None else self._thread.call if self._thread else None
        if call is None:
            raise RuntimeError("StopSignals.handle needs call= or install() (which starts its thread)")
        call(functools.partial(self._carry_out, line, work))
        return action

    def _carry_out(self, line: str, work: Callable[[], Any] | None) -> None:
        self.announce(line)
        if work is not None:
            work()

    def install(self) -> StopSignals:
        """Handle :data:`STOP_SIGNALS` in this process with :meth:`handle` (call from the main
        thread); :meth:`restore` puts the previous handlers back. Returns ``self``."""
        if self.call is None and self._thread is None:
            self._thread = _StopThread()
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self.handle)
        return self

    def restore(self) -> None:
        """Put back the handlers :meth:`install` replaced (call it once the process's loop is
        gone, so a late signal does not hand work to a closed loop)."""
        for signum, previous in self._previous.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()
        if self._thread is not None:
            self._thread.close()
            self._thread = None
