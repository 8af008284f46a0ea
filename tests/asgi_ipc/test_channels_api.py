"""The Channels 4 layer contract in one process (the shapes of Channels' own layer tests).

Multi-process behaviour is in test_channels_processes.py, the segment's lifetime in
test_channels_lifetime.py.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import threading
import warnings

import pytest

channels = pytest.importorskip("channels", reason="the Channels 4 layer needs 'channels>=4'")

from channels.exceptions import ChannelFull  # noqa: E402
from channels.layers import BaseChannelLayer  # noqa: E402

from asgi_ipc import MessageTooLarge  # noqa: E402
from asgi_ipc.channels import IgnoredConfigWarning, IPCChannelLayer  # noqa: E402
from asgi_ipc.segment import SHM_DIR  # noqa: E402

from .channels_workers import config  # noqa: E402


@pytest.fixture
def make(prefix):
    """Factory for layers on the test's prefix; all are closed and the segment must be gone."""
    made: list[IPCChannelLayer] = []

    def make_(**extra) -> IPCChannelLayer:
        layer = IPCChannelLayer(**config(prefix, **extra))
        made.append(layer)
        return layer

    yield make_
    for layer in made:
        layer.close_now()
    assert not os.path.exists(f"{SHM_DIR}/asgi_ipc.{prefix}"), "the last layer out left it"


def run(coro, timeout: float = 20):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def nothing_within(layer, channel: str, seconds: float = 0.2) -> bool:
    try:
        await asyncio.wait_for(layer.receive(channel), seconds)
    except asyncio.TimeoutError:
        return True
    return False


async def nothing_within_any(layer, *channels: str, seconds: float = 0.2) -> bool:
    """``nothing_within`` for every channel, all watched at once (one wait, not one each)."""
    return all(await asyncio.gather(*(nothing_within(layer, c, seconds) for c in channels)))


def test_is_a_channels_layer(make):
    layer = make()
    assert isinstance(layer, BaseChannelLayer)
    assert layer.extensions == ["groups", "flush"]
    assert layer.close_pools.__func__ is IPCChannelLayer.close


def test_send_receive(make):
    layer = make()

    async def main():
        await layer.send("test-channel-1", {"type": "test.message", "text": "Ahoy-hoy!"})
        await layer.send("test-channel-1", {"type": "test.message", "body": b"\x00\xff"})
        assert await layer.receive("test-channel-1") == {"type": "test.message",
                                                          "text": "Ahoy-hoy!"}
        assert await layer.receive("test-channel-1") == {"type": "test.message",
                                                          "body": b"\x00\xff"}

    run(main())


def test_message_is_copied_at_send(make):
    layer = make()

    async def main():
        message = {"type": "x", "items": [1]}
        await layer.send("copy", message)
        message["items"].append(2)
        assert await layer.receive("copy") == {"type": "x", "items": [1]}

    run(main())


def test_receive_waits_for_a_later_send(make):
    layer = make()

    async def main():
        waiting = asyncio.ensure_future(layer.receive("later"))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        await layer.send("later", {"n": 1})
        assert await waiting == {"n": 1}

    run(main())


def test_new_channel_names(make):
    layer = make()

    async def main():
        first = await layer.new_channel()
        assert re.match(r"^specific\.[A-Za-z]{12}![0-9a-f]{32}\Z", first)
        assert first.split("!")[0] == f"specific.{layer.client_prefix}"
        random.seed(1)
        a = await layer.new_channel("prefix")
        random.seed(1)
        b = await layer.new_channel("prefix")
        assert a != b and a.startswith(f"prefix.{layer.client_prefix}!")
        with pytest.raises(TypeError, match="bad prefix"):
            await layer.new_channel("bad prefix")

    run(main())


def test_process_local_send_receive(make):
    layer = make()

    async def main():
        one, two = await layer.new_channel(), await layer.new_channel()
        await layer.send(two, {"to": "two"})
        await layer.send(one, {"to": "one"})
        assert await layer.receive(one) == {"to": "one"}  # buffers two's message meanwhile
        assert await layer.receive(two) == {"to": "two"}

    run(main())


@pytest.mark.parametrize("name", ["a?b", "has space", "é", "x" * 100, "", 7, None, b"bytes",
                                  "trailing\n"])
def test_bad_channel_names_raise_type_error(make, name):
    layer = make()

    async def main():
        for call in (lambda: layer.send(name, {}), lambda: layer.receive(name),
                     lambda: layer.group_add("g", name), lambda: layer.group_discard("g", name)):
            with pytest.raises(TypeError, match="Got|Invalid channel name"):
                await call()

    run(main())


@pytest.mark.parametrize("name", ["a!b", "g?", "with space", 3])
def test_bad_group_names_raise_type_error(make, name):
    layer = make()

    async def main():
        with pytest.raises(TypeError, match="Group"):
            await layer.group_add(name, "chan")
        with pytest.raises(TypeError, match="Group"):
            await layer.group_send(name, {})

    run(main())


def test_message_must_be_a_dict(make):
    layer = make()

    async def main():
        with pytest.raises(TypeError, match="must be a dict"):
            await layer.send("chan", ["not", "a", "dict"])

    run(main())


def test_capacity_raises_channels_channel_full(make):
    layer = make(capacity=3)

    async def main():
        for i in range(3):
            await layer.send("full", {"i": i})
        with pytest.raises(ChannelFull):
            await layer.send("full", {"i": 3})
        assert [(await layer.receive("full"))["i"] for _ in range(3)] == [0, 1, 2]

    run(main())


def test_channel_capacity_patterns(make):
    layer = make(capacity=10, channel_capacity={"small-*": 1, re.compile(r"^re\d$"): 2})

    async def main():
        await layer.send("small-1", {})
        with pytest.raises(ChannelFull):
            await layer.send("small-1", {})
        await layer.send("re1", {})
        await layer.send("re1", {})
        with pytest.raises(ChannelFull):
            await layer.send("re1", {})
        for _ in range(10):
            await layer.send("other", {})
        assert layer.get_capacity("small-9") == 1  # Channels' own helper agrees

    run(main())


def test_oversized_message(make):
    layer = make()

    async def main():
        with pytest.raises(MessageTooLarge, match="limit is 65536"):
            await layer.send("big", {"body": b"x" * 70000})
        await layer.send("big", {"body": b"x" * 1000})  # the layer still works
        assert len((await layer.receive("big"))["body"]) == 1000

    run(main())


def test_expiry(make):
    layer = make(expiry=0.2)

    async def main():
        await layer.send("old", {"n": 1})
        await asyncio.sleep(0.3)
        await layer.send("old", {"n": 2})
        assert await layer.receive("old") == {"n": 2}

    run(main())


def test_group_send_and_discard(make):
    layer = make()

    async def main():
        one, two, three = [await layer.new_channel() for _ in range(3)]
        for name in (one, two, three):
            await layer.group_add("room", name)
        await layer.group_add("room", one)  # idempotent
        await layer.group_discard("room", two)
        await layer.group_discard("room", "never-a-member")
        await layer.group_send("room", {"hello": True})
        assert await layer.receive(one) == {"hello": True}
        assert await layer.receive(three) == {"hello": True}
        assert await nothing_within_any(layer, one, two)

    run(main())


def test_group_send_skips_full_members(make):
    layer = make(capacity=1)

    async def main():
        await layer.group_add("g", "busy")
        await layer.group_add("g", "idle")
        await layer.send("busy", {"first": True})
        await layer.group_send("g", {"n": 1})  # never raises
        assert await layer.receive("idle") == {"n": 1}
        assert await layer.receive("busy") == {"first": True}
        assert await nothing_within(layer, "busy")

    run(main())


def test_member_whose_message_expired_stays_in_the_group(make):
    layer = make(expiry=0.3)

    async def main():
        await layer.group_add("stay", "member")
        await layer.group_send("stay", {"n": 1})
        await asyncio.sleep(0.5)
        await layer.send("sweep", {})  # sends sweep expired messages
        await layer.group_send("stay", {"n": 2})
        assert await layer.receive("member") == {"n": 2}
        assert layer._process_for().segment.group_channels("stay") == ["member"]

    run(main())


def test_group_expiry(make):
    layer = make(group_expiry=0.3)

    async def main():
        await layer.group_add("short", "member")
        await asyncio.sleep(0.5)
        await layer.group_send("short", {"n": 1})
        assert await nothing_within(layer, "member")

    run(main())


def test_flush(make):
    layer = make()

    async def main():
        name = await layer.new_channel()
        await layer.send("plain", {"n": 1})
        await layer.send(name, {"n": 1})
        await layer.send(await layer.new_channel(), {"buffered": True})
        await layer.group_add("g", name)
        await layer.flush()
        await layer.group_send("g", {"n": 2})
        assert await nothing_within_any(layer, "plain", name)

    run(main())


def test_ignored_channels_redis_keys_warn_and_unknown_keys_fail(prefix, make):
    with pytest.warns(IgnoredConfigWarning, match="'hosts'"):
        make(hosts=[("127.0.0.1", 6379)])
    with pytest.warns(IgnoredConfigWarning, match="'symmetric_encryption_keys'"):
        make(symmetric_encryption_keys=["secret"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make(serializer_format="msgpack")  # what this layer does anyway: no warning
    with pytest.raises(TypeError, match="no_such_key"):
        IPCChannelLayer(**config(prefix, no_such_key=1))
    with pytest.raises(ValueError, match="prefix"):
        IPCChannelLayer(prefix="bad/prefix")


def test_cancelled_receives_lose_nothing(make):
    """Many receivers on one normal channel and on specific channels, cut short by
    ``wait_for`` at random moments while messages arrive: each message is received once."""
    layer = make(capacity=5000)
    total = 1500

    async def main():
        specific = [await layer.new_channel() for _ in range(3)]
        targets = ["work", *specific]
        got: dict[str, list[int]] = {name: [] for name in targets}

        async def receiver(name: str, stop: asyncio.Event) -> None:
            rng = random.Random(name)
            while not stop.is_set():  # short waits, most of them cancelled
                try:
                    got[name].append((await asyncio.wait_for(
                        layer.receive(name), rng.uniform(0, 0.002)))["n"])
                except asyncio.TimeoutError:
                    pass
            while True:  # then drain what is left
                try:
                    got[name].append((await asyncio.wait_for(layer.receive(name), 0.3))["n"])
                except asyncio.TimeoutError:
                    return

        async def sender() -> None:
            for n in range(total):
                await layer.send(targets[n % len(targets)], {"n": n})
                if n % 7 == 0:
                    await asyncio.sleep(0)

        stop = asyncio.Event()
        tasks = [asyncio.ensure_future(receiver(name, stop)) for name in targets]
        tasks.append(asyncio.ensure_future(receiver("work", stop)))  # two on "work"
        await sender()
        stop.set()
        await asyncio.gather(*tasks)
        everything = sorted(n for ns in got.values() for n in ns)
        assert everything == list(range(total)), "lost or duplicated messages"

    run(main(), 60)


def test_cancelled_task_leaves_message_for_next_receive(make):
    layer = make()

    async def main():
        name = await layer.new_channel()
        for channel in ("plain", name):
            waiting = asyncio.ensure_future(layer.receive(channel))
            await asyncio.sleep(0.01)
            await layer.send(channel, {"n": 1})
            waiting.cancel()  # maybe after the message reached it: it must not be lost
            try:
                await waiting
                got = [waiting.result()]
            except asyncio.CancelledError:
                got = []
            if not got:
                got.append(await asyncio.wait_for(layer.receive(channel), 2))
            assert got == [{"n": 1}]

    run(main())


def test_async_to_sync_from_threads(make):
    """Sync code in threads: every call runs on a new event loop."""
    from asgiref.sync import async_to_sync

    layer = make(capacity=1000)
    errors: list[BaseException] = []
    received: list[int] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        try:
            mine = async_to_sync(layer.new_channel)()
            async_to_sync(layer.group_add)("threads", mine)
            for n in range(25):
                async_to_sync(layer.send)("shared", {"n": index * 100 + n})
                async_to_sync(layer.send)(mine, {"n": n})
                assert async_to_sync(layer.receive)(mine) == {"n": n}
            for _ in range(25):
                message = async_to_sync(layer.receive)("shared")
                with lock:
                    received.append(message["n"])
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    assert not errors, errors
    assert sorted(received) == sorted(i * 100 + n for i in range(4) for n in range(25))
    assert len(layer._process_for().segment.group_channels("threads")) == 4


def test_close_then_use_again(make):
    layer = make()

    async def main():
        await layer.send("again", {"n": 1})
        other = make()  # keeps the segment alive while the first one closes
        await layer.close()
        await layer.close()  # idempotent
        assert await layer.receive("again") == {"n": 1}  # attaches anew
        await other.close()

    run(main())


def test_through_channels_settings(prefix):
    """Channels builds the layer from BACKEND and CONFIG, as with settings.CHANNEL_LAYERS."""
    from channels.layers import ChannelLayerManager

    layers = {"default": {"BACKEND": "asgi_ipc.channels.IPCChannelLayer",
                          "CONFIG": config(prefix)}}
    manager = type("Manager", (ChannelLayerManager,),
                   {"configs": property(lambda self: layers)})()
    layer = manager["default"]
    try:
        assert isinstance(layer, IPCChannelLayer)

        async def main():
            await layer.send("via-settings", {"ok": True})
            assert await layer.receive("via-settings") == {"ok": True}

        run(main())
    finally:
        layer.close_now()
    assert not os.path.exists(f"{SHM_DIR}/asgi_ipc.{prefix}")


def test_receive_refuses_another_process_specific_channel(make):
    layer = make()

    async def main():
        with pytest.raises(ValueError, match="made by another process"):
            await layer.receive("specific.someoneElse!abc")
        with pytest.raises(ValueError, match="made by another process"):
            await layer.receive("plainname!abc")

    run(main())


def test_unread_specific_channel_buffer_keeps_the_newest(make):
    """Messages for a specific channel nobody reads are buffered up to its capacity; at the
    bound the oldest are dropped, and the channel read later gets the newest."""
    layer = make(capacity=5)

    async def main():
        quiet, busy = await layer.new_channel(), await layer.new_channel()
        for n in range(12):
            await layer.send(quiet, {"n": n})
            await layer.send(busy, {"n": n})
            assert await layer.receive(busy) == {"n": n}  # pumps the queue: quiet's are buffered
        assert [(await layer.receive(quiet))["n"] for _ in range(5)] == [7, 8, 9, 10, 11]
        assert await nothing_within(layer, quiet)

    run(main())


def test_buffered_messages_expire(make):
    layer = make(expiry=0.3)

    async def main():
        quiet, busy = await layer.new_channel(), await layer.new_channel()
        await layer.send(quiet, {"old": True})
        await layer.send(busy, {})
        await layer.receive(busy)  # takes quiet's message into the buffer too
        await asyncio.sleep(0.5)
        assert await nothing_within(layer, quiet)

    run(main())


def test_a_new_event_loop_per_call_leaks_nothing(make):
    """async_to_sync from a thread without a loop runs every call on a new loop, which dies
    after it: what a waiting receive set up on a dead loop (a doorbell socket, a waiter slot)
    is given back, so a sync worker can wait like this forever."""
    from asgiref.sync import async_to_sync

    layer = make()
    fds = lambda: len(os.listdir("/proc/self/fd"))  # noqa: E731
    async_to_sync(layer.send)("warm", {})
    async_to_sync(layer.receive)("warm")
    before = fds()
    for n in range(60):
        sender = threading.Timer(0.002, async_to_sync(layer.send), ("later", {"n": n}))
        sender.start()
        assert async_to_sync(layer.receive)("later") == {"n": n}  # waits: a pump on a new loop
        sender.join(10)
    assert fds() - before < 10, f"{fds() - before} descriptors more after 60 calls"


def test_asgi_ipc_stats_shows_this_layers_queues_and_groups(make):
    import subprocess
    import sys

    layer = make()

    async def main():
        name = await layer.new_channel()
        await layer.group_add("lobby", name)
        await layer.send(name, {})
        await layer.send("jobs", {})

    run(main())
    stats = subprocess.run([sys.executable, "-m", "asgi_ipc", "stats", "--prefix", layer.prefix],
                           capture_output=True, text=True, timeout=60)
    assert stats.returncode == 0, stats.stderr
    assert f"specific.{layer.client_prefix}!" in stats.stdout
    assert "jobs" in stats.stdout and "lobby" in stats.stdout
