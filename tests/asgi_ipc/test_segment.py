"""Segment ownership, header validation, permissions and loss detection (DESIGN invariant 7/8)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import stat

import posix_ipc
import pytest

from asgi_ipc import (
    IPCChannelLayer,
    SegmentExists,
    SegmentLost,
    SegmentMismatch,
    SegmentMissing,
)
from asgi_ipc.layout import H_IDENT, HEADER, LAYOUT_FINGERPRINT, LAYOUT_VERSION, MAGIC, READY
from asgi_ipc.segment import inspect, list_segments, remove, segment_path

SMALL = dict(message_memory=2**20, max_message_size=64 * 1024, channels=64, groups=8,
             group_members=64)


def test_created_with_mode_0600_even_under_a_loose_umask(make_layer):
    old = os.umask(0)
    try:
        layer = make_layer(**SMALL)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(segment_path(layer.prefix)).st_mode) == 0o600


def test_segment_path_is_the_file_a_layer_creates_and_refuses_a_bad_prefix(make_layer):
    layer = make_layer(**SMALL)
    path = segment_path(layer.prefix)
    assert path == f"/dev/shm/asgi_ipc.{layer.prefix}" and os.path.exists(path)
    with pytest.raises(ValueError, match="prefix '../x' is not usable"):
        segment_path("../x")


def test_attach_only_fails_clearly_when_missing(prefix):
    with pytest.raises(SegmentMissing, match=f"no channel layer segment for prefix '{prefix}'"):
        IPCChannelLayer(prefix=prefix, create=False, **SMALL)
    assert not os.path.exists(segment_path(prefix))


def test_must_create_refuses_an_existing_segment(make_layer, prefix):
    make_layer(**SMALL)
    with pytest.raises(SegmentExists, match="doctor --clean"):
        IPCChannelLayer(prefix=prefix, create=True, **SMALL)


def test_attaching_with_other_sizes_is_an_error_naming_them(make_layer, prefix):
    make_layer(**SMALL)
    with pytest.raises(SegmentMismatch, match=r"channels=64 \(you asked 128\)"):
        IPCChannelLayer(prefix=prefix, **{**SMALL, "channels": 128})


def test_foreign_segment_is_refused(prefix):
    shm = posix_ipc.SharedMemory(f"/asgi_ipc.{prefix}", posix_ipc.O_CREX, mode=0o600, size=8192)
    try:
        os.write(shm.fd, b"NOT OURS" * 16)
        with pytest.raises(SegmentMismatch, match="not an asgi_ipc segment"):
            IPCChannelLayer(prefix=prefix, **SMALL)
        info = inspect(f"asgi_ipc.{prefix}")
        assert not info.valid and info.stale and "bad magic" in info.problem
    finally:
        shm.close_fd()
        shm.unlink()


def test_other_layout_version_is_refused(make_layer, prefix):
    layer = make_layer(**SMALL)
    mm = layer._a().segment.mm
    H_IDENT.pack_into(mm, 0, MAGIC, LAYOUT_VERSION + 1, H_IDENT.unpack_from(mm, 0)[2])
    try:
        with pytest.raises(SegmentMismatch, match=f"layout version {LAYOUT_VERSION + 1}"):
            IPCChannelLayer(prefix=prefix, **SMALL)
    finally:
        H_IDENT.pack_into(mm, 0, MAGIC, LAYOUT_VERSION, H_IDENT.unpack_from(mm, 0)[2])


def _write_fingerprint(mm, value: int) -> None:
    HEADER.run("fingerprint").pack_into(mm, HEADER.at("fingerprint"), value)


def test_a_segment_of_other_layout_tables_under_the_same_version_is_refused(make_layer, prefix):
    layer = make_layer(**SMALL)
    mm = layer._a().segment.mm
    other = LAYOUT_FINGERPRINT ^ 0x5A5A5A5A
    _write_fingerprint(mm, other)
    try:
        with pytest.raises(SegmentMismatch) as caught:
            IPCChannelLayer(prefix=prefix, **SMALL)
        message = str(caught.value)
        assert "stale or foreign" in message and f"layout fingerprint {other:08x}" in message
        assert f"uses {LAYOUT_FINGERPRINT:08x}" in message and "doctor --clean" in message
        info = inspect(f"asgi_ipc.{prefix}")
        assert not info.valid and f"layout fingerprint {other:08x}" in info.problem
    finally:
        _write_fingerprint(mm, LAYOUT_FINGERPRINT)
    IPCChannelLayer(prefix=prefix, **SMALL).close()  # the restored header is accepted again


def test_a_segment_from_before_fingerprints_is_refused_by_its_version(prefix):
    """Version 1 segments have 0 where the fingerprint now is; their version refuses them."""
    shm = posix_ipc.SharedMemory(f"/asgi_ipc.{prefix}", posix_ipc.O_CREX, mode=0o600, size=8192)
    try:
        header = bytearray(4096)
        H_IDENT.pack_into(header, 0, MAGIC, 1, READY)
        os.write(shm.fd, header)
        with pytest.raises(SegmentMismatch, match="stale or foreign: it has layout version 1, "
                           f"this asgi_ipc uses {LAYOUT_VERSION}"):
            IPCChannelLayer(prefix=prefix, **SMALL)
        assert "layout version 1" in inspect(f"asgi_ipc.{prefix}").problem
    finally:
        shm.close_fd()
        shm.unlink()


def test_an_attacher_waits_for_a_creator_that_has_not_sized_the_object_yet(prefix):
    """Processes started together race to create: the losers may open the object before its
    creator sized it, and wait for it as for the ready flag instead of calling it foreign."""
    import threading

    from asgi_ipc.segment import Segment

    shm = posix_ipc.SharedMemory(f"/asgi_ipc.{prefix}", posix_ipc.O_CREX, mode=0o600)
    try:
        with pytest.raises(SegmentMismatch, match="0 bytes, too small"):  # nobody sizes it
            Segment(prefix, None, create=False, ready_timeout=0.1)

        def creator_goes_on() -> None:
            header = bytearray(4096)
            H_IDENT.pack_into(header, 0, MAGIC, LAYOUT_VERSION, 0)
            os.ftruncate(shm.fd, len(header))
            os.pwrite(shm.fd, header, 0)

        late = threading.Timer(0.2, creator_goes_on)
        late.start()
        try:  # the attacher got past the size and now waits for the ready flag
            with pytest.raises(SegmentMismatch, match="never finished"):
                Segment(prefix, None, create=False, ready_timeout=1.0)
        finally:
            late.join()
    finally:
        shm.close_fd()
        shm.unlink()


def test_half_initialised_segment_is_refused(prefix):
    shm = posix_ipc.SharedMemory(f"/asgi_ipc.{prefix}", posix_ipc.O_CREX, mode=0o600, size=8192)
    try:
        header = bytearray(4096)
        H_IDENT.pack_into(header, 0, MAGIC, LAYOUT_VERSION, 0)  # never marked ready
        os.write(shm.fd, header)
        from asgi_ipc.segment import Segment

        with pytest.raises(SegmentMismatch, match="never finished"):
            Segment(prefix, None, create=False, ready_timeout=0.2)
    finally:
        shm.close_fd()
        shm.unlink()


def _create_and_die(prefix: str) -> None:
    IPCChannelLayer(prefix=prefix, **SMALL)
    os.kill(os.getpid(), signal.SIGKILL)


def test_stale_segment_of_a_dead_creator_is_detected_and_removable(prefix):
    proc = multiprocessing.get_context("fork").Process(target=_create_and_die, args=(prefix,))
    proc.start()
    proc.join(10)
    try:
        info = inspect(f"asgi_ipc.{prefix}")
        assert info.valid and not info.creator_alive and info.stale
        assert "stale" in info.verdict()
        assert any(s.name == f"asgi_ipc.{prefix}" for s in list_segments())
        # an attacher may still use it (the data is intact) ...
        with IPCChannelLayer(prefix=prefix, create=False, **SMALL) as layer:
            layer.send("x", {"ok": True})
            assert layer.receive(["x"]) == ("x", {"ok": True})
            assert inspect(f"asgi_ipc.{prefix}").attached_pids == (os.getpid(),)
    finally:
        remove(prefix)
    assert not os.path.exists(segment_path(prefix))


def test_live_segment_is_not_stale(make_layer):
    layer = make_layer(**SMALL)
    info = inspect(f"asgi_ipc.{layer.prefix}")
    assert info.valid and info.creator_alive and not info.stale
    assert info.creator_pid == os.getpid()


def test_removed_segment_is_reported_as_lost(make_layer):
    layer = make_layer(**SMALL, receive_timeout=0.2)
    other = IPCChannelLayer(prefix=layer.prefix, create=False, **SMALL, receive_timeout=0.2)
    try:
        layer.unlink()
        with pytest.raises(SegmentLost, match="was removed"):
            other.receive(["anything"], block=True)
    finally:
        other.close()


def test_only_the_creator_may_unlink(make_layer):
    from asgi_ipc import SegmentError

    layer = make_layer(**SMALL)
    with IPCChannelLayer(prefix=layer.prefix, create=False, **SMALL) as other:
        with pytest.raises(SegmentError, match="only"):
            other.unlink()


@pytest.mark.parametrize("prefix", ["", "has space", "x" * 65, "slash/no", None])
def test_bad_prefix(prefix):
    with pytest.raises(ValueError, match="prefix"):
        IPCChannelLayer(prefix=prefix, **SMALL)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"message_memory": 1000}, "message_memory"),
    ({"message_memory": 2**20, "max_message_size": 2**20}, "at least two messages"),
    ({"waiters": 1000}, "waiters"),
    ({"capacity": 0}, "capacity"),
    ({"channel_capacity": {"a*": -1}}, "channel_capacity"),
    ({"expiry": 0}, "expiry"),
])
def test_bad_sizes_and_settings(prefix, kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        IPCChannelLayer(prefix=prefix, **{**SMALL, **kwargs})
    assert not os.path.exists(segment_path(prefix))


def test_forked_child_reattaches_and_never_unlinks(make_layer):
    layer = make_layer(**SMALL)
    layer.send("to_child", {"n": 1})
    ctx = multiprocessing.get_context("fork")
    result = ctx.Queue()

    def child():
        channel, message = layer.receive(["to_child"])  # the inherited instance
        layer.send("to_parent", {"got": message["n"], "owner": layer.owner})
        layer.close()  # must not remove the parent's segment
        result.put("done")

    proc = ctx.Process(target=child)
    proc.start()
    assert result.get(timeout=10) == "done"
    proc.join(10)
    assert os.path.exists(segment_path(layer.prefix))
    assert layer.receive(["to_parent"]) == ("to_parent", {"got": 1, "owner": False})
