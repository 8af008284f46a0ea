"""Who removes the segment of the Channels 4 layer: the last process out, whoever created it.

Children are real interpreters (multiprocessing ``spawn``) that exit normally without calling
``close`` - as under Channels, which never closes layers - or are SIGKILLed.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import queue
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("channels", reason="the Channels 4 layer needs 'channels>=4'")

from asgi_ipc.segment import SHM_DIR, inspect  # noqa: E402
from tests.procman.procs import wait_for  # noqa: E402

from . import channels_workers as workers  # noqa: E402

SPAWN = multiprocessing.get_context("spawn")


@pytest.fixture
def procs(prefix):
    """Started children: all are killed at the end, and the segment must not outlive them."""
    started = []
    yield started
    for proc in started:
        if proc.is_alive():
            proc.kill()
        proc.join(10)
    path = f"{SHM_DIR}/asgi_ipc.{prefix}"
    if os.path.exists(path):  # a failed test: leave nothing behind, then fail loudly
        os.unlink(path)
        pytest.fail(f"{path} was left behind")


def hold_all(procs, prefix, results, releases, send_to=None) -> list:
    """Children attached to the segment, one per ``releases`` entry, each staying until its
    release is set (None: exit at once). They start together (an interpreter start is most of
    a child's time) and race to create the segment: one creates it, the others attach."""
    started, kept = [], []  # kept: a child unpickles its Event after start(); keep it alive
    for release in releases:
        if release is None:
            release = SPAWN.Event()
            release.set()
        kept.append(release)
        proc = SPAWN.Process(target=workers.hold, args=(prefix, results, release, 60.0, send_to))
        proc.start()
        procs.append(proc)
        started.append(proc)
    reports = []
    for _ in started:
        try:
            reports.append(results.get(timeout=30))
        except queue.Empty:
            pytest.fail("a child did not attach within 30 s")
    assert sorted(reports) == sorted(("attached", proc.pid) for proc in started)
    return started


def hold(procs, prefix, results, release=None, send_to=None):
    """A child attached to the segment, staying until ``release`` is set (None: exit at once)."""
    return hold_all(procs, prefix, results, [release], send_to)[0]


def leave(proc) -> None:
    """Wait for a released child to exit by itself."""
    proc.join(15)
    assert proc.exitcode == 0, f"child {proc.pid} exited with {proc.exitcode}"


def exists(prefix) -> bool:
    return os.path.exists(f"{SHM_DIR}/asgi_ipc.{prefix}")


def test_creator_may_leave_first_and_restarts_reattach(prefix, procs):
    results = SPAWN.Queue()
    first_release, second_release = SPAWN.Event(), SPAWN.Event()
    first = hold(procs, prefix, results, first_release)
    assert inspect(f"asgi_ipc.{prefix}").creator_pid == first.pid
    hold(procs, prefix, results, second_release)
    first_release.set()
    leave(first)
    assert exists(prefix), "the creator removed the segment another process uses"
    # processes restarted after the creator left attach to the same segment
    restarted = hold_all(procs, prefix, results, [None, None], send_to="notes")
    for proc in restarted:
        leave(proc)
    layer = workers.make(prefix)

    async def main():
        return [await asyncio.wait_for(layer.receive("notes"), 5) for _ in range(2)]

    assert sorted(m["id"] for m in asyncio.run(main())) == sorted(p.pid for p in restarted)
    second_release.set()
    leave(procs[1])
    assert exists(prefix)
    layer.close_now()  # the test process is the last one out
    assert not exists(prefix)


def test_last_process_out_removes_the_segment(prefix, procs):
    results = SPAWN.Queue()
    releases = [SPAWN.Event() for _ in range(3)]
    children = hold_all(procs, prefix, results, releases)
    for release, child in zip(releases, children):
        assert exists(prefix)
        release.set()
        leave(child)
    assert not exists(prefix), "a clean stop of every process left the segment"


def test_sigkilled_process_never_keeps_the_segment_from_the_last_one(prefix, procs):
    results = SPAWN.Queue()
    release = SPAWN.Event()
    killed, survivor = hold_all(procs, prefix, results, [SPAWN.Event(), release])
    os.kill(killed.pid, signal.SIGKILL)
    killed.join(10)
    release.set()
    leave(survivor)
    assert not exists(prefix), "the survivor, last out, did not remove the segment"


def _keepers(prefix) -> list:
    """The keeper processes (asgi_ipc.keeper) waiting on this prefix's segment."""
    import psutil

    path = f"{SHM_DIR}/asgi_ipc.{prefix}"
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "asgi_ipc.keeper" in cmdline and path in cmdline:
            found.append(proc)
    return found


def test_everyone_sigkilled_the_keeper_removes_the_segment(prefix, procs):
    results = SPAWN.Queue()
    children = hold_all(procs, prefix, results, [SPAWN.Event(), SPAWN.Event()])
    assert len(_keepers(prefix)) == 1  # started once, by the creator
    for child in children:
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
    wait_for(lambda: not exists(prefix), 10, "the keeper to remove the segment of killed processes")
    wait_for(lambda: not _keepers(prefix), 10, "the keeper to exit")


def test_with_its_keeper_killed_too_doctor_clean_removes_what_is_left(prefix, procs):
    results = SPAWN.Queue()
    children = hold_all(procs, prefix, results, [SPAWN.Event(), SPAWN.Event()])
    for keeper in _keepers(prefix):
        keeper.kill()
    for child in children:
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
    assert exists(prefix)
    doctor = subprocess.run([sys.executable, "-m", "asgi_ipc", "doctor", "--clean",
                             "--prefix", prefix], capture_output=True, text=True, timeout=60)
    assert not exists(prefix), f"doctor --clean kept it:\n{doctor.stdout}{doctor.stderr}"


def _forked_last_one_out(layer, attached, release) -> None:
    async def main():
        await layer.send("from-child", {})  # attaches anew in the child
    asyncio.run(main())
    attached.set()
    release.wait(30)
    layer.close_now()


def _parent_of_a_fork(prefix, attached, release) -> None:
    """Attach, fork a child that attaches too, then wait to be killed."""
    layer = workers.make(prefix)
    child = multiprocessing.get_context("fork").Process(
        target=_forked_last_one_out, args=(layer, attached, release))
    child.start()
    time.sleep(60)  # killed before (never wait on a shared Event here: a killed waiter wedges it)


def test_forked_child_outliving_its_killed_parent_removes_the_segment(prefix, procs):
    """A child shares the parent's open file descriptions: kept open, the copy would hold the
    parent's lock after the parent was killed, and the child, last out, could never remove
    the segment. The child closes its copies at fork."""
    attached, release = SPAWN.Event(), SPAWN.Event()
    parent = SPAWN.Process(target=_parent_of_a_fork, args=(prefix, attached, release))
    parent.start()
    procs.append(parent)
    assert attached.wait(30), "the forked child did not attach"
    os.kill(parent.pid, signal.SIGKILL)
    # Not parent.join(): it waits for the parent's sentinel pipe to close, and the forked child
    # inherited that pipe, so join would wait out its whole timeout. exitcode reaps the parent.
    wait_for(lambda: parent.exitcode is not None, 10, "the killed parent to exit")
    assert parent.exitcode == -signal.SIGKILL
    assert exists(prefix)
    release.set()  # the orphaned child leaves now (bounded: the child is not ours to join)
    wait_for(lambda: not exists(prefix), 15, "the forked child, last out, to remove the segment")
