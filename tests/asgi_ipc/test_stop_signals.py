"""``asgi_ipc.stop_signals``: the one stop-signal table, decided in memory, applied by
``StopSignals`` (in memory, to this process, and to a real busy process), and the supervisor's
own table checked against it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asgi_ipc.stop_signals import FAST_EXIT, STOP_SIGNALS, StopAction, StopSignals, decide, describe
from procman.policy import Policy
from tests.children import end_with_parent

TERM, INT, QUIT = signal.SIGTERM, signal.SIGINT, signal.SIGQUIT
GRACEFUL, FAST, IGNORE = StopAction.GRACEFUL, StopAction.FAST, StopAction.IGNORE
REPO = Path(__file__).resolve().parents[2]


# -- the table, in memory -------------------------------------------------------------------------

@pytest.mark.parametrize(("signum", "stopping", "action"), [
    (TERM, False, GRACEFUL), (TERM, True, IGNORE),
    (INT, False, GRACEFUL), (INT, True, FAST),
    (QUIT, False, FAST), (QUIT, True, FAST),
])
def test_the_table(signum, stopping, action):
    assert decide(signum, stopping) is action
    assert decide(int(signum), stopping) is action  # a handler's plain int works the same


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGUSR1, 0, 999])
def test_a_signal_outside_the_table_is_a_clear_error(signum):
    with pytest.raises(ValueError, match=r"is not a stop signal; the table covers SIGTERM, SIGINT, SIGQUIT"):
        decide(signum, False)


def test_each_line_says_what_happens_and_how_to_stop_at_once():
    assert describe(INT, GRACEFUL) == "interrupted; stopping gracefully (Ctrl-C again to stop at once)"
    assert describe(TERM, GRACEFUL) == "SIGTERM: stopping gracefully (Ctrl-C or SIGQUIT stops at once)"
    assert describe(TERM, IGNORE).startswith("SIGTERM again: already stopping gracefully")
    assert describe(INT, FAST) == "SIGINT during the graceful stop: stopping at once"
    assert describe(QUIT, FAST) == "SIGQUIT: stopping at once"


class Process:
    """A process's stops, recorded; its loop is a list of queued work run by ``turn()``."""

    def __init__(self, own_fast: bool = True) -> None:
        self.events: list[str] = []
        self.queued: list = []
        self.signals = StopSignals(
            lambda: self.events.append("graceful"),
            (lambda: self.events.append("fast")) if own_fast else None,
            call=self.queued.append, announce=lambda line: self.events.append(f"log: {line}"),
        )

    def turn(self) -> list[str]:
        while self.queued:
            self.queued.pop(0)()
        events, self.events = self.events, []
        return events


def test_the_handler_only_queues_and_the_loop_carries_out():
    process = Process()
    assert process.signals.handle(INT) is GRACEFUL
    assert process.events == [] and len(process.queued) == 1  # nothing ran in the handler
    assert process.turn() == [f"log: {describe(INT, GRACEFUL)}", "graceful"]
    assert process.signals.handle(INT) is FAST
    assert process.turn() == [f"log: {describe(INT, FAST)}", "fast"]


def test_a_second_term_changes_nothing_and_quit_is_fast_at_once():
    process = Process()
    process.signals.handle(TERM)
    assert process.turn()[-1] == "graceful"
    assert process.signals.handle(TERM) is IGNORE
    assert process.turn() == [f"log: {describe(TERM, IGNORE)}"]
    assert process.signals.handle(QUIT) is FAST
    assert process.turn()[-1] == "fast"

    process = Process()
    assert process.signals.handle(QUIT) is FAST
    assert process.turn() == [f"log: {describe(QUIT, FAST)}", "fast"]  # no graceful stop first


@settings(deadline=None)  # a loaded machine must not fail a pure test
@given(st.lists(st.sampled_from([TERM, INT, QUIT]), max_size=8))
def test_any_sequence_graceful_at_most_once_first_and_fast_exactly_when_the_table_says(sequence):
    process = Process()
    events = []
    for signum in sequence:
        process.signals.handle(signum)
        events += [e for e in process.turn() if not e.startswith("log: ")]
    assert events.count("graceful") <= 1
    if sequence:
        assert events[0] == ("fast" if sequence[0] == QUIT else "graceful")
    later = sequence[1:]
    expect_fast = bool(sequence) and (sequence[0] == QUIT or QUIT in later or INT in later)
    assert ("fast" in events) == expect_fast


@settings(deadline=None)
@given(st.lists(st.sampled_from(["TERM", "INT", "QUIT"]), min_size=1, max_size=6))
def test_the_supervisor_policy_stops_as_the_table_says(names):
    """procman's supervisor keeps its own handlers (HUP, TTIN/TTOU beside the three), but the
    three stop signals mean there what the table says."""
    policy = Policy([], clock=lambda: 1000.0, jitter=lambda: 0.0)
    policy.start()
    kind = None
    for name in names:
        getattr(policy, f"handle_{name.lower()}")()
        action = decide(getattr(signal, f"SIG{name}"), kind is not None)
        if action is not IGNORE and kind != "fast":
            kind = action.value
        assert policy.stopping == kind, (names, name)


# -- installed in this process ----------------------------------------------------------------------

def test_install_handles_the_three_signals_and_restore_puts_the_previous_back():
    before = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    queued: list = []
    signals = StopSignals(lambda: None, call=queued.append).install()
    try:
        assert {signal.getsignal(signum) for signum in STOP_SIGNALS} == {signals.handle}
        os.kill(os.getpid(), signal.SIGTERM)  # handled in this (main) thread before kill returns
        deadline = time.monotonic() + 10
        while not queued and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(queued) == 1 and signals.stopping
    finally:
        signals.restore()
    assert {signum: signal.getsignal(signum) for signum in STOP_SIGNALS} == before


def test_without_a_loop_the_stop_runs_in_a_thread_not_in_the_handler():
    """A thread-based process: its graceful stop sets an ``Event`` (which a handler must not:
    the interrupted thread may hold the event's lock), so it runs in the module's thread."""
    stopped = threading.Event()
    ran_in: list[str] = []

    def graceful() -> None:
        ran_in.append(threading.current_thread().name)
        stopped.set()

    lines: list[str] = []
    signals = StopSignals(graceful, announce=lines.append).install()
    try:
        os.kill(os.getpid(), signal.SIGINT)
        assert stopped.wait(10)
    finally:
        signals.restore()
    assert ran_in == ["stop-signals"]
    assert lines == [describe(INT, GRACEFUL)]


def test_handle_without_call_or_install_says_what_is_missing():
    with pytest.raises(RuntimeError, match=r"needs call= or install\(\)"):
        StopSignals(lambda: None).handle(TERM)


# -- a real process -------------------------------------------------------------------------------

# An asyncio process whose loop a consumer blocks: its graceful stop can never run, yet a second
# Ctrl-C ends it at once (the default fast stop runs in the handler). The handler's ``call``
# prints "queued" so the test sends the second SIGINT only after the first was handled (two
# pending SIGINTs would merge into one).
BUSY = """
import asyncio, os, time
from asgi_ipc.stop_signals import StopSignals

async def main():
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def call(work):
        os.write(1, b"queued\\n")
        loop.call_soon_threadsafe(work)

    StopSignals(stop.set, call=call).install()
    os.write(1, b"ready\\n")
    time.sleep(120)  # a consumer blocking the loop
    await stop.wait()
    os.write(1, b"graceful stop ran\\n")

asyncio.run(main())
"""


def _read_line(proc: subprocess.Popen, want: bytes, timeout: float = 30) -> None:
    """Wait (bounded) for the line ``want`` on ``proc``'s stdout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.strip() == want:
            return
        if not line:
            break
    raise AssertionError(f"no {want!r} line from the child (exit {proc.poll()})")


@contextlib.contextmanager
def busy_process() -> Iterator[subprocess.Popen]:
    """The BUSY process, ready; killed (bounded) if the test did not end it."""
    proc = subprocess.Popen([sys.executable, "-c", BUSY], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, preexec_fn=end_with_parent())
    try:
        _read_line(proc, b"ready")
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()


@pytest.mark.parametrize("second", [signal.SIGINT, signal.SIGQUIT])
def test_a_second_ctrl_c_or_quit_ends_a_busy_process_at_once(second):
    with busy_process() as proc:
        proc.send_signal(signal.SIGINT)
        _read_line(proc, b"queued")
        proc.send_signal(second)
        assert proc.wait(30) == FAST_EXIT  # of its 120 s sleep
        err = proc.stderr.read().decode()
        assert f"{describe(second, FAST)} (exit {FAST_EXIT})" in err
        assert b"graceful stop ran" not in proc.stdout.read()


def test_a_second_sigterm_does_not_end_a_busy_process():
    with busy_process() as proc:
        proc.send_signal(signal.SIGTERM)
        _read_line(proc, b"queued")
        proc.send_signal(signal.SIGTERM)
        _read_line(proc, b"queued")  # handled: a fast stop would have exited before queuing
        assert proc.poll() is None
        proc.send_signal(signal.SIGQUIT)
        assert proc.wait(30) == FAST_EXIT


@pytest.mark.parametrize(("module", "name"), [
    ("procman.exitcodes", "FAST"),
    ("procman.interface.exitcodes", "EXIT_FAST"),
    ("django_glue.exitcodes", "EXIT_FAST"),
])
def test_each_executables_table_names_the_fast_exit_code(module, name):
    """The tables keep the number (they must not import the layer package to name it)."""
    import importlib

    assert getattr(importlib.import_module(module), name) == FAST_EXIT
