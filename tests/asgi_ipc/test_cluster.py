"""``asgi_ipc.cluster``: the site processes' side of the cluster link (outboxes in shared memory)."""

from __future__ import annotations

import os

import pytest

from asgi_ipc import IPCChannelLayer
from asgi_ipc.cluster import (BROADCAST_OUTBOX, ENV, OUTBOX_CAPACITY, SHARED_OUTBOX, SharedChannels,
                              backend_for, cluster_env)
from asgi_ipc.segment import SHM_DIR

SIZES = dict(message_memory=4 * 2**20, channels=256, groups=64, group_members=2048, receive_timeout=1.0)


@pytest.fixture
def cluster_layer(prefix, impl, monkeypatch):
    """A cluster-mode layer sharing ``thumbnail`` and ``mail.*``, and a plain one on the same segment."""
    monkeypatch.setenv(ENV, cluster_env(["thumbnail", "mail.*"])[ENV])
    layer = backend_for(IPCChannelLayer)(prefix=prefix, create=True, capacity=3, **SIZES)
    plain = IPCChannelLayer(prefix=prefix, create=False)
    yield layer, plain
    plain.close()
    layer.close()
    assert not os.path.exists(os.path.join(SHM_DIR, f"asgi_ipc.{prefix}"))


def test_without_the_environment_the_class_is_unchanged(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert backend_for(IPCChannelLayer) is IPCChannelLayer


def test_cluster_class_is_a_cached_subclass(monkeypatch):
    monkeypatch.setenv(ENV, cluster_env([])[ENV])
    cls = backend_for(IPCChannelLayer)
    assert issubclass(cls, IPCChannelLayer) and cls is not IPCChannelLayer
    assert backend_for(IPCChannelLayer) is cls and backend_for(cls) is cls


def test_group_send_reaches_local_members_and_leaves_one_outbox_entry(cluster_layer):
    layer, plain = cluster_layer
    layer.group_add("room", "ifc.a!1")
    layer.group_add("room", "ifc.a!2")
    layer.send_group("room", {"text": "hi"})
    got = {plain.receive(["ifc.a!"])[0] for _ in range(2)}
    assert got == {"ifc.a!1", "ifc.a!2"}
    channel, entry = plain.receive([BROADCAST_OUTBOX])
    assert channel == BROADCAST_OUTBOX and entry["g"] == "room" and entry["m"] == {"text": "hi"}
    assert isinstance(entry["t"], float)
    assert plain.receive([BROADCAST_OUTBOX]) == (None, None)  # one entry per broadcast, not per member


def test_shared_send_goes_to_the_outbox_and_others_stay_local(cluster_layer):
    layer, plain = cluster_layer
    layer.send("thumbnail", {"n": 1})
    layer.send("mail.welcome", {"to": "x"})
    layer.send("http.request", {"path": "/"})
    layer.send("ifc.b!7", {"text": "reply"})
    assert plain.receive(["thumbnail"]) == (None, None)
    entry = plain.receive([SHARED_OUTBOX])[1]
    assert (entry["c"], entry["m"], type(entry["t"])) == ("thumbnail", {"n": 1}, float)
    assert plain.receive([SHARED_OUTBOX])[1]["c"] == "mail.welcome"
    assert plain.receive(["http.request"]) == ("http.request", {"path": "/"})
    assert plain.receive(["ifc.b!"]) == ("ifc.b!7", {"text": "reply"})
    assert plain.receive([BROADCAST_OUTBOX]) == (None, None)


def test_full_outbox_raises_for_shared_sends_and_drops_only_the_remote_copy_of_broadcasts(cluster_layer):
    layer, plain = cluster_layer
    for n in range(OUTBOX_CAPACITY):  # the outboxes' own capacity, not the site's default of 3
        layer.send("thumbnail", {"n": n})
    with pytest.raises(layer.ChannelFull):
        layer.send("thumbnail", {"n": "one too many"})
    layer.group_add("room", "ifc.a!1")
    for n in range(OUTBOX_CAPACITY - 1):  # the link is gone: its broadcast outbox fills up
        layer.send(BROADCAST_OUTBOX, {"g": "room", "m": {"n": n}, "t": 0.0})
    layer.send_group("room", {"n": "last in"})
    layer.send_group("room", {"n": "late"})  # outbox full: the local member still gets it
    stats = plain.channel_statistics(BROADCAST_OUTBOX)
    assert stats["messages_pending"] == OUTBOX_CAPACITY and stats["channel_full_count"] == 1
    assert [plain.receive(["ifc.a!"])[1]["n"] for _ in range(2)] == ["last in", "late"]


def test_bad_shared_patterns_and_a_malformed_environment_are_clear_errors(monkeypatch):
    with pytest.raises(ValueError, match="'ifc!' is not allowed.*belong to one process"):
        SharedChannels(["ifc!"])
    monkeypatch.setenv(ENV, "{not json")
    with pytest.raises(ValueError, match=f"{ENV}=.*malformed.*procman run --cluster"):
        backend_for(IPCChannelLayer)


def test_shared_matching():
    shared = SharedChannels(["thumbnail", "mail.*"])
    assert shared("thumbnail") and shared("mail.x") and not shared("thumbnails") and not shared("http.request")
    assert not shared("mail.x!abc") and not shared("mail.x?y")
    assert shared.literal_names() == ["thumbnail"]
