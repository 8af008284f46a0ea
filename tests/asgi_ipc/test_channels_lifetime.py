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

import pytest

pytest.importorskip("channels", reason="the Channels 4 layer needs 'channels>=4'")

from asgi_ipc.segment import SHM_DIR, inspect  # noqa: E402

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


def hold(procs, prefix, results, seconds, send_to=None):
    proc = SPAWN.Process(target=workers.hold, args=(prefix, results, seconds, send_to))
    proc.start()
    procs.append(proc)
    try:
        kind, pid = results.get(timeout=30)
    except queue.Empty:
        pytest.fail("a child did not attach within 30 s")
    assert (kind, pid) == ("attached", proc.pid)
    return proc


def exists(prefix) -> bool:
    return os.path.exists(f"{SHM_DIR}/asgi_ipc.{prefix}")


def test_creator_may_leave_first_and_restarts_reattach(prefix, procs):
    results = SPAWN.Queue()
    first = hold(procs, prefix, results, 0.5)
    assert inspect(f"asgi_ipc.{prefix}").creator_pid == first.pid
    second = hold(procs, prefix, results, 30)
    first.join(15)
    assert first.exitcode == 0
    assert exists(prefix), "the creator removed the segment another process uses"
    # a process restarted after the creator left attaches to the same segment
    for _ in range(2):
        restarted = hold(procs, prefix, results, 0, send_to="notes")
        restarted.join(15)
        assert restarted.exitcode == 0
    layer = workers.make(prefix)

    async def main():
        return [await asyncio.wait_for(layer.receive("notes"), 5) for _ in range(2)]

    assert sorted(m["id"] for m in asyncio.run(main())) == sorted(p.pid for p in procs[2:4])
    second.kill()
    second.join(10)
    assert exists(prefix)
    layer.close_now()  # the test process is the last one out
    assert not exists(prefix)


def test_last_process_out_removes_the_segment(prefix, procs):
    results = SPAWN.Queue()
    children = [hold(procs, prefix, results, 0.3 * i) for i in range(3)]
    for child in children:
        child.join(15)
        assert child.exitcode == 0
    assert not exists(prefix), "a clean stop of every process left the segment"


def test_sigkilled_process_never_keeps_the_segment_from_the_last_one(prefix, procs):
    results = SPAWN.Queue()
    killed = hold(procs, prefix, results, 60)
    survivor = hold(procs, prefix, results, 0.5)
    os.kill(killed.pid, signal.SIGKILL)
    killed.join(10)
    survivor.join(15)
    assert survivor.exitcode == 0
    assert not exists(prefix), "the survivor, last out, did not remove the segment"


def test_everyone_sigkilled_leaves_what_doctor_clean_removes(prefix, procs):
    results = SPAWN.Queue()
    children = [hold(procs, prefix, results, 60) for _ in range(2)]
    for child in children:
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
    assert exists(prefix)
    doctor = subprocess.run([sys.executable, "-m", "asgi_ipc", "doctor", "--clean",
                             "--prefix", prefix], capture_output=True, text=True, timeout=60)
    assert not exists(prefix), f"doctor --clean kept it:\n{doctor.stdout}{doctor.stderr}"
