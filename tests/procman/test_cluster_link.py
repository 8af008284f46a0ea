"""``procman.cluster_link.ClusterLink`` in-process: two links on two shared-memory layers (two
simulated machines) and one real ``redis-server``."""

from __future__ import annotations

import os
import threading
import uuid

import pytest

from asgi_ipc import IPCChannelLayer
from asgi_ipc.cluster import ENV, backend_for, cluster_env

from .cluster_redis import needs_redis_server, redis_server  # noqa: F401 - a fixture
from .procs import wait_for

pytestmark = needs_redis_server

SIZES = dict(message_memory=4 * 2**20, channels=128, groups=32, group_members=256, receive_timeout=0.5)


@pytest.fixture
def machine(redis_server, monkeypatch):
    """``machine()`` -> (site layer in cluster mode, running link); all stopped and removed after."""
    from procman.cluster_link import ClusterLink

    name = f"n{uuid.uuid4().hex[:8]}"
    made = []
    monkeypatch.setenv(ENV, cluster_env(["thumbnail"])[ENV])

    def start() -> tuple[IPCChannelLayer, "ClusterLink"]:
        prefix = f"lk{os.getpid()}_{uuid.uuid4().hex[:8]}"
        site = backend_for(IPCChannelLayer)(prefix=prefix, create=True, **SIZES)
        plain = IPCChannelLayer(prefix=prefix, create=False)
        lines: list[str] = []
        link = ClusterLink(plain, f"redis://127.0.0.1:{redis_server.port}/0", name, ["thumbnail"],
                           credit=2, log=lines.append)
        link.lines = lines
        thread = threading.Thread(target=link.run, args=(lambda relayed: None, None), daemon=True)
        thread.start()
        made.append((site, plain, link, thread))
        wait_for(link.connected.is_set, 10, "the link to connect")
        return site, link

    yield start
    for site, plain, link, thread in made:
        link.stop.set()
        thread.join(10)
        assert not thread.is_alive()
        plain.close()
        site.close()
        assert not os.path.exists(f"/dev/shm/asgi_ipc.{site.prefix}")


def test_broadcast_crosses_once_and_own_publishes_are_ignored(machine):
    a_site, a_link = machine()
    b_site, b_link = machine()
    a_site.group_add("room", "ifc.a!1")
    b_site.group_add("room", "ifc.b!1")
    wait_for(lambda: a_link.client.pubsub_numsub(a_link.topic)[0][1] == 2, 10, "both subscriptions")
    a_site.send_group("room", {"text": "hi"})
    assert a_site.receive(["ifc.a!"]) == ("ifc.a!1", {"text": "hi"})
    got = wait_for(lambda: b_site.receive(["ifc.b!"])[1], 10, "the broadcast on b")
    assert got == {"text": "hi"}
    wait_for(lambda: a_link.stats.counts["broadcasts_out"] == 1 and b_link.stats.counts["broadcasts_in"] == 1,
             10, "the counters")
    assert a_link.stats.counts["broadcasts_in"] == 0  # a saw its own publish and dropped it silently
    assert a_site.receive(["ifc.a!"]) == (None, None)  # exactly once on a
    assert b_site.receive(["ifc.b!"]) == (None, None)  # exactly once on b


def test_junk_on_the_topic_is_counted_and_the_link_goes_on(machine):
    a_site, a_link = machine()
    b_site, b_link = machine()
    b_site.group_add("room", "ifc.b!1")
    wait_for(lambda: a_link.client.pubsub_numsub(a_link.topic)[0][1] == 2, 10, "both subscriptions")
    a_link.client.publish(a_link.topic, b"\xc1not msgpack")
    a_link.client.publish(a_link.topic, b"\x80")  # an empty map: no group
    wait_for(lambda: b_link.stats.counts["dropped_in"] == 2, 10, "the junk to be counted")
    a_site.send_group("room", {"text": "still relaying"})
    assert wait_for(lambda: b_site.receive(["ifc.b!"])[1], 10, "a broadcast after the junk") == {"text": "still relaying"}


def test_shared_job_is_taken_by_one_machine_within_its_credit(machine):
    a_site, a_link = machine()
    b_site, b_link = machine()
    for n in range(6):
        a_site.send("thumbnail", {"n": n})
    # Nobody consumes: each link pulls at most its credit (2) into its local queue.
    wait_for(lambda: a_link.stats.counts["shared_out"] == 6, 10, "all six pushed")
    wait_for(lambda: a_link.stats.counts["shared_in"] + b_link.stats.counts["shared_in"] == 4, 10, "both credits")
    pending = [s.channel_statistics("thumbnail")["messages_pending"] for s in (a_site, b_site)]
    assert pending == [2, 2]
    taken = []
    for site in (a_site, b_site):
        while (message := site.receive(["thumbnail"])[1]) is not None:
            taken.append(message["n"])
    wait_for(lambda: a_link.stats.counts["shared_in"] + b_link.stats.counts["shared_in"] == 6, 10, "the rest")
    for site in (a_site, b_site):
        taken += [m["n"] for m in iter(lambda s=site: s.receive(["thumbnail"])[1], None)]
    assert sorted(taken) == list(range(6))  # each job once, somewhere


def test_while_redis_is_away_shared_sends_wait_in_the_outbox_and_go_out_when_it_returns(machine, redis_server):
    from asgi_ipc.cluster import BROADCAST_OUTBOX, SHARED_OUTBOX

    a_site, a_link = machine()
    a_site.group_add("room", "ifc.a!1")
    redis_server.halt()
    wait_for(lambda: not a_link.connected.is_set(), 10, "the link to notice")
    assert sum("cluster link: error: Redis at" in line for line in a_link.lines) == 1
    a_site.send("thumbnail", {"n": 1})
    a_site.send_group("room", {"text": "local"})
    assert a_site.receive(["ifc.a!"]) == ("ifc.a!1", {"text": "local"})  # local members still served
    wait_for(lambda: a_link.stats.counts["dropped_out"] == 1, 10, "the remote copy of the broadcast dropped")
    assert a_site.channel_statistics(SHARED_OUTBOX)["messages_pending"] == 1  # kept, not taken
    assert a_site.channel_statistics(BROADCAST_OUTBOX)["messages_pending"] == 0  # drained, never blocks
    redis_server.resume()
    wait_for(a_link.connected.is_set, 10, "the link to reconnect")
    wait_for(lambda: a_site.receive(["thumbnail"])[1], 10, "the waiting job, through Redis and back")
    assert a_link.stats.counts["shared_out"] == 1 and a_link.stats.counts["shared_in"] == 1
    assert sum("cluster link: connected to Redis" in line for line in a_link.lines) == 2


def test_a_stop_ends_every_loop_quietly_and_leaves_no_wake_up_in_redis(machine, redis_server):
    """The stop wakes the loops blocked in the layer, the subscription and BLPOP (the teardown's
    join measures how promptly); none of them reports the stop as Redis being unreachable, and
    nothing of the wake-ups is left in Redis (the cancelled BLPOP leaves no key, the wake topic
    no subscriber)."""
    import redis as redis_py

    _, link = machine()
    wait_for(lambda: link.client.pubsub_numsub(link.wake_topic)[0][1] == 1, 10, "the subscription")
    link.stop.set()
    wait_for(lambda: not any(thread.is_alive() for thread in link.threads), 15, "every loop to return")
    client = redis_py.Redis(port=redis_server.port)
    try:
        assert not [key for key in client.scan_iter(match=f"{link.name}*") if b"wake" in key]
        wait_for(lambda: client.pubsub_numsub(link.wake_topic)[0][1] == 0, 10, "the subscription gone")
    finally:
        client.close()
    assert not any("unreachable" in line for line in link.lines)
