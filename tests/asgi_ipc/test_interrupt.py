"""``layer.wake()``: a stop signal ends the process's blocked receives at once, and doorbells
ignore rings from other users."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
import time

import pytest

from asgi_ipc.doorbell import Doorbell, doorbell_address
from asgi_ipc.layout import W_WAITING


def test_a_signal_handler_calling_wake_ends_a_blocking_receive(make_layer):
    layer = make_layer(receive_timeout=30)
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: layer.wake())
    att = layer._a()
    try:
        def send_signal_once_blocked():
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # until the main thread's receive is blocked
                if any(att.waiters.slot(w)[:2] == (W_WAITING, os.getpid())
                       for w in range(att.waiters.count)):
                    break
                time.sleep(0.01)
            os.kill(os.getpid(), signal.SIGUSR1)

        threading.Thread(target=send_signal_once_blocked, daemon=True).start()
        started = time.monotonic()
        assert layer.receive(["idle"], block=True) == (None, None)
        waited = time.monotonic() - started
        assert waited < 15, f"receive returned after {waited:.1f} s, not at the signal"  # of 30
    finally:
        signal.signal(signal.SIGUSR1, previous)
    # the slot is left unregistered: a later send does not ring a receiver that has gone
    layer.send("idle", {"late": True})
    assert layer.receive(["idle"]) == ("idle", {"late": True})


def test_wake_ends_pending_receive_async(make_layer):
    layer = make_layer(receive_timeout=30)

    async def main():
        task = asyncio.ensure_future(layer.receive_async(["idle"]))
        await asyncio.sleep(0.05)
        assert not task.done()
        layer.wake()
        return await asyncio.wait_for(task, 10)

    assert asyncio.run(main()) == (None, None)
    layer.send("idle", {"after": True})

    async def again():
        return await asyncio.wait_for(layer.receive_async(["idle"]), 10)

    assert asyncio.run(again()) == ("idle", {"after": True})


def _ring_as(uid: int, address: bytes) -> None:
    os.setuid(uid)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    for _ in range(5):
        sock.sendto(b"!", address)
    os._exit(0)


@pytest.mark.skipif(os.getuid() != 0, reason="ringing as another uid needs root (os.setuid)")
def test_rings_from_another_uid_are_ignored_and_counted(make_layer):
    layer = make_layer(receive_timeout=30)
    att = layer._a()
    bell = Doorbell(att.segment.name)
    try:
        address = doorbell_address(att.segment.name, bell.pid, bell.nonce)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                _ring_as(65534, address)
            finally:
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert bell.wait(0.3) is False, "a ring from another user woke the doorbell"
        assert bell.foreign == 5
        layer.count_foreign(bell)
        assert layer.global_statistics()["foreign_rings"] == 5
        # a ring from our own uid still wakes it
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"!", address)
        assert bell.wait(5) is True
    finally:
        bell.close()
