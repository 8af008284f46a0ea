"""A process known dead leaves nothing behind: its ``prefix!`` channels leave their groups and
their queued messages are reclaimed, whether its supervisor says so (``forget_process``) or a
sender finds its doorbell gone."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import pytest

from asgi_ipc import IPCChannelLayer
from asgi_ipc.layout import W_FREE, W_WAITING

CTX = multiprocessing.get_context("fork")


def _block_on(prefix: str, channel: str) -> None:
    layer = IPCChannelLayer(prefix=prefix, create=False, receive_timeout=60)
    layer.receive([channel], block=True)


def _dead_reader(layer, channel: str) -> int:
    """Start a process blocked on ``channel``, SIGKILL and reap it; return its pid."""
    att = layer._a()
    proc = CTX.Process(target=_block_on, args=(layer.prefix, channel))
    proc.start()
    deadline = time.monotonic() + 10
    while not any(att.waiters.slot(w)[:2] == (W_WAITING, proc.pid) for w in range(att.waiters.count)):
        assert time.monotonic() < deadline, "the reader never blocked"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(5)
    return proc.pid


def test_forget_process_reclaims_its_local_channels(make_layer):
    layer = make_layer()
    pid = _dead_reader(layer, "ifc.dead!")
    for name in ("ifc.dead!a", "ifc.dead!b"):
        layer.group_add("room", name)
    layer.group_add("room", "ifc.live!c")
    layer.group_add("other", "ifc.dead!a")
    att = layer._a()
    with att.lock:  # queued while it was dying (a send now would find it dead by itself)
        cid = att.store.find(b"ifc.dead!")
        for name in (b"ifc.dead!a", b"ifc.dead!b"):
            att.store.enqueue(cid, name, b"\x80", time.time() + 60, time.time(), 100)
    report = layer.forget_process(pid)
    # Its waiter slot is freed here, unless a lock repair already freed it: the reader may have
    # been killed inside its once-a-second check, holding the lock (then the next locker repairs).
    waiters = report.pop("waiters")
    assert report == {"channels": 1, "messages": 2, "memberships": 3} and waiters in (0, 1)
    assert not any(att.waiters.slot(w)[1] == pid for w in range(att.waiters.count)
                   if att.waiters.slot(w)[0] != W_FREE)
    assert layer.group_channels("room") == ["ifc.live!c"]
    assert layer.group_channels("other") == []
    assert layer.channel_statistics("ifc.dead!a")["messages_pending"] == 0
    stats = layer.global_statistics()
    assert stats["dead_processes"] == 1 and stats["reclaimed_messages"] == 2
    assert layer.check() == []


def test_a_ring_refused_by_a_dead_reader_reclaims_it(make_layer):
    layer = make_layer()
    pid = _dead_reader(layer, "ifc.gone!")
    layer.group_add("room", "ifc.gone!x")
    layer.group_add("room", "plain")
    layer.send_group("room", {"hello": True})  # rings the dead reader: refused
    assert layer.group_channels("room") == ["plain"]
    assert layer.global_statistics()["dead_processes"] == 1
    assert layer.receive(["plain"]) == ("plain", {"hello": True})
    with pytest.raises(ValueError, match="process id"):
        layer.forget_process(0)
    assert pid > 0


def test_forget_process_wakes_a_waiter_for_a_message_the_dead_one_never_took(make_layer):
    """A receiver woken for a message and killed before taking it: the next one is rung."""
    layer = make_layer(receive_timeout=30)
    att = layer._a()
    from tests.asgi_ipc.test_wakeups import rung, waiting_bell

    live = waiting_bell(layer, ["work"])
    try:
        with att.lock:  # a message the dead process was woken for (its slot is gone with it)
            cid = att.store.find(b"work")
            att.store.enqueue(cid, b"work", b"\x80", time.time() + 60, time.time(), 100)
        layer.forget_process(_dead_reader(layer, "ifc.x!"))
        assert rung(live), "the message waits and the live receiver was not woken"
    finally:
        with att.lock:
            att.waiters.free(live.wid)
        live.close()
