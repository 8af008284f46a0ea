"""Delivery across processes: wake-ups without polling, at-most-once, order, fairness."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time

import pytest

from asgi_ipc import ArenaFull, ChannelFull, IPCChannelLayer

CTX = multiprocessing.get_context("fork")


def _ctx_switches(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches"):
                return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches")


def test_blocking_receive_sleeps_without_polling(make_layer):
    """A blocked receiver makes no wake-ups of its own: a sleep loop would switch ~50 times."""
    layer = make_layer(receive_timeout=30)
    ready, done = CTX.Event(), CTX.Event()

    def receiver():
        ready.set()
        channel, message = layer.receive(["idle"], block=True)
        assert message == {"wake": True}
        done.set()

    proc = CTX.Process(target=receiver)
    proc.start()
    try:
        ready.wait(10)
        time.sleep(0.2)  # let it block
        before = _ctx_switches(proc.pid)
        time.sleep(0.5)
        after = _ctx_switches(proc.pid)
        assert after - before <= 2, f"blocked receiver woke {after - before} times in 0.5 s"
        layer.send("idle", {"wake": True})
        assert done.wait(10), "the send did not wake the blocked receiver"
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
    assert proc.exitcode == 0


def test_blocking_receive_returns_none_after_its_timeout(make_layer):
    layer = make_layer(receive_timeout=0.2)
    assert layer.receive(["nothing"], block=True) == (None, None)


def test_many_threads_blocked_each_get_one_message(make_layer):
    layer = make_layer(receive_timeout=10)
    results, threads = [], []
    for _ in range(8):
        thread = threading.Thread(target=lambda: results.append(layer.receive(["job"], block=True)))
        thread.start()
        threads.append(thread)
    time.sleep(0.1)
    for i in range(8):
        layer.send("job", {"i": i})
    for thread in threads:
        thread.join(15)
    assert sorted(m["i"] for _, m in results) == list(range(8))


def _consume(prefix, channel, out, stop):
    layer = IPCChannelLayer(prefix=prefix, create=False, message_memory=4 * 2**20, channels=256,
                            groups=64, group_members=2048, max_message_size=2**20,
                            receive_timeout=0.2)
    got = []
    while True:
        name, message = layer.receive([channel], block=True)
        if name is None:
            if stop.is_set():
                break
            continue
        got.append(message["id"])
    out.put(got)


def _produce(prefix, channel, tag, count):
    layer = IPCChannelLayer(prefix=prefix, create=False, message_memory=4 * 2**20, channels=256,
                            groups=64, group_members=2048, max_message_size=2**20)
    for seq in range(count):
        while True:
            try:
                layer.send(channel, {"id": [tag, seq]})
                break
            except ChannelFull:
                time.sleep(0.0005)


def test_two_producers_two_consumers_at_most_once_nothing_lost(make_layer):
    layer = make_layer(capacity=500)
    out, stop = CTX.Queue(), CTX.Event()
    consumers = [CTX.Process(target=_consume, args=(layer.prefix, "shared", out, stop))
                 for _ in range(2)]
    producers = [CTX.Process(target=_produce, args=(layer.prefix, "shared", t, 3000))
                 for t in range(2)]
    for p in consumers + producers:
        p.start()
    for p in producers:
        p.join(60)
    deadline = time.monotonic() + 30
    while layer.channel_statistics("shared")["messages_pending"] and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    got = out.get(timeout=30) + out.get(timeout=30)
    for p in consumers:
        p.join(10)
    ids = [tuple(i) for i in got]
    assert len(ids) == len(set(ids)), "a message was delivered twice"
    assert set(ids) == {(t, s) for t in range(2) for s in range(3000)}, "messages were lost"


def test_process_specific_channel_keeps_each_senders_order(make_layer):
    layer = make_layer(capacity=10000)
    producers = [CTX.Process(target=_produce, args=(layer.prefix, f"reply!{t}", t, 2000))
                 for t in range(2)]
    for p in producers:
        p.start()
    got: dict[str, list[int]] = {"reply!0": [], "reply!1": []}
    deadline = time.monotonic() + 60
    while sum(map(len, got.values())) < 4000 and time.monotonic() < deadline:
        channel, message = layer.receive(["reply!"], block=True)
        if channel:
            got[channel].append(message["id"][1])
    for p in producers:
        p.join(10)
    assert got["reply!0"] == list(range(2000)) and got["reply!1"] == list(range(2000))


def test_a_busy_channel_does_not_starve_a_quiet_one(make_layer):
    layer = make_layer(capacity=2000)
    for i in range(1000):
        layer.send("busy", {"i": i})
    layer.send("quiet", {"i": -1})
    first = [layer.receive(["busy", "quiet"])[0] for _ in range(2)]
    assert "quiet" in first


def test_fair_rotation_over_many_channels(make_layer):
    layer = make_layer(capacity=100)
    names = [f"c{i}" for i in range(5)]
    for name in names:
        for _ in range(10):
            layer.send(name, {})
    seen = [layer.receive(names)[0] for _ in range(10)]
    assert {seen.count(name) for name in names} == {2}


def test_arena_full_is_distinct_from_channel_full(make_layer):
    layer = make_layer(message_memory=256 * 1024, max_message_size=32 * 1024, capacity=10**6)
    with pytest.raises(ArenaFull, match="no room in shared memory"):
        for i in range(10000):
            layer.send(f"fill{i % 7}", {"pad": b"x" * 20000})
    stats = layer.global_statistics()
    assert stats["arena_full_count"] == 1 and stats["channel_full_count"] == 0
    # draining frees the memory again, coalescing small blocks into big ones
    for i in range(7):
        while layer.receive([f"fill{i}"])[0]:
            pass
    layer.send("small", {"pad": b"x" * 100})
    layer.send("big", {"pad": b"x" * 30000})
    assert layer.check() == []


def test_expired_member_leaves_its_groups_including_process_channels(make_layer):
    layer = make_layer(expiry=0.2)
    for member in ("plain", "ifc!a", "ifc!b", "ifc!c"):
        layer.group_add("room", member)
        layer.group_add("other", member)
    layer.send("plain", {})
    layer.send("ifc!a", {})
    layer.send_group("just_b_c", {})  # no such group: nothing happens
    time.sleep(0.25)
    assert layer.receive(["plain", "ifc!"]) == (None, None)  # expired, and evicted
    assert sorted(layer.group_channels("room")) == ["ifc!b", "ifc!c"]
    assert sorted(layer.group_channels("other")) == ["ifc!b", "ifc!c"]
    layer.send_group("room", {"n": 1})  # one fan-out entry for ifc!b and ifc!c
    time.sleep(0.25)
    layer.send("ifc!d", {})  # a later send on the same queue reclaims the expired entry
    assert layer.receive(["ifc!"]) == ("ifc!d", {})
    assert layer.group_channels("room") == []


def test_expired_messages_are_reclaimed_without_anyone_receiving(make_layer):
    layer = make_layer(expiry=0.1, capacity=10**6)
    for i in range(200):
        layer.send(f"orphan{i % 20}", {"pad": b"x" * 1000})
    time.sleep(0.15)
    for i in range(40):  # unrelated traffic drives the incremental sweep
        layer.send("traffic", {})
        layer.receive(["traffic"])
    assert layer.global_statistics()["messages_pending"] == 0
    assert layer.global_statistics()["messages_expired"] == 200


def test_group_fanout_to_one_process_is_one_entry_expanded_on_receive(make_layer):
    layer = make_layer(capacity=1)
    members = [f"ifc!s{i}" for i in range(300)]
    for member in members:
        layer.group_add("big", member)
    layer.send_group("big", {"hello": "all"})
    assert layer.channel_statistics("ifc!")["messages_pending"] == 1  # capacity 1 is enough
    got = [layer.receive(["ifc!"]) for _ in range(300)]
    assert sorted(c for c, _ in got) == sorted(members)
    assert all(m == {"hello": "all"} for _, m in got)
    got[0][1]["hello"] = "changed"
    assert got[1][1] == {"hello": "all"}  # every delivery is its own dict
    assert layer.receive(["ifc!"]) == (None, None)


def test_asyncio_receive_across_processes(make_layer):
    import asyncio

    layer = make_layer(receive_timeout=10)

    def sender():
        time.sleep(0.2)
        IPCChannelLayer(prefix=layer.prefix, create=False, message_memory=4 * 2**20,
                        channels=256, groups=64, group_members=2048,
                        max_message_size=2**20).send("aio!x", {"v": 1})

    proc = CTX.Process(target=sender)
    proc.start()

    async def main():
        return await layer.receive_async(["aio!"])

    assert asyncio.run(main()) == ("aio!x", {"v": 1})
    proc.join(10)


def test_cancelled_async_receive_loses_nothing(make_layer):
    import asyncio

    layer = make_layer(receive_timeout=10)

    async def main():
        task = asyncio.ensure_future(layer.receive_async(["c"]))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        layer.send("c", {"kept": 1})
        return await layer.receive_async(["c"])

    assert asyncio.run(main()) == ("c", {"kept": 1})


def test_receive_twisted_many_concurrent_requests(make_layer):
    """Several outstanding Deferreds share one doorbell; each gets its own message.

    The reactor runs in a child process so the test process's global reactor stays pristine.
    """
    layer = make_layer(receive_timeout=10)
    out = CTX.Queue()

    def child():
        from twisted.internet import defer, task

        def main(reactor):
            ds = [layer.receive_twisted(["tw!"]) for _ in range(5)]
            for i in range(5):
                reactor.callLater(0.01 * i, layer.send, f"tw!{i}", {"i": i})
            return defer.gatherResults(ds).addCallback(lambda r: out.put(sorted(c for c, _ in r)))

        task.react(main)

    proc = CTX.Process(target=child)
    proc.start()
    assert out.get(timeout=20) == [f"tw!{i}" for i in range(5)]
    proc.join(10)


def _blocked_receiver(prefix, channel, out):
    layer = IPCChannelLayer(prefix=prefix, create=False, receive_timeout=60)
    out.put(os.getpid())
    out.put(layer.receive([channel], block=True))


def test_a_dead_waiter_does_not_swallow_the_wake_up(make_layer):
    """A receiver killed while blocked leaves its waiter slot behind; the next send may pick
    it. The failed ring must then wake another receiver, not leave it asleep until its (here
    60 s) receive timeout."""
    layer = make_layer()
    out = CTX.Queue()
    victim = CTX.Process(target=_blocked_receiver, args=(layer.prefix, "jobs", out))
    victim.start()
    victim_pid = out.get(timeout=10)
    time.sleep(0.3)  # let it register first, so it holds the lower waiter slot
    survivor = CTX.Process(target=_blocked_receiver, args=(layer.prefix, "jobs", out))
    survivor.start()
    out.get(timeout=10)
    time.sleep(0.3)
    os.kill(victim_pid, 9)
    victim.join(10)
    layer.send("jobs", {"n": 1})
    assert out.get(timeout=15) == ("jobs", {"n": 1})
    survivor.join(10)
