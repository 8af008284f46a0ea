"""Blocking receives of ``RedisChannelLayer`` in asyncio and Twisted: no message is lost when a
receive is cancelled, even after the server popped a message for it.

The Twisted cases run their reactor in a child process, so the test process's global reactor
stays pristine (as in test_delivery).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time

import pytest
import redis

from asgi_ipc.redis import RedisChannelLayer

CTX = multiprocessing.get_context("fork")


def _pending(layer, client, channel: str) -> int:
    return client.llen(f"{layer.prefix}:q:{channel}")


@pytest.fixture
def raw(redis_server):
    client = redis.Redis(port=redis_server.port)
    yield client
    client.close()


def test_cancelled_after_the_server_popped_gives_the_message_back(make_redis_layer, raw):
    layer = make_redis_layer(receive_timeout=10)

    async def main():
        task = asyncio.ensure_future(layer.receive_async(["c"]))
        await asyncio.sleep(0.2)  # blocked in BLPOP
        layer.send("c", {"kept": 1})
        time.sleep(0.05)  # the server has popped it and replied; the loop has not run yet
        assert _pending(layer, raw, "c") == 0
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert layer.receive(["c"]) == ("c", {"kept": 1})
    assert layer.channel_statistics("c")["messages_received"] == 1  # counted once, when taken


def test_cancelled_while_waiting_then_a_new_receive_gets_the_message(make_redis_layer):
    layer = make_redis_layer(receive_timeout=10)

    async def main():
        task = asyncio.ensure_future(layer.receive_async(["c"]))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        layer.send("c", {"kept": 2})
        return await layer.receive_async(["c"])

    assert asyncio.run(main()) == ("c", {"kept": 2})


def test_concurrent_async_receives_each_get_their_own_message(make_redis_layer):
    layer = make_redis_layer(receive_timeout=10)

    async def main():
        tasks = [asyncio.ensure_future(layer.receive_async(["many!", "other"])) for _ in range(4)]
        await asyncio.sleep(0.1)
        for i in range(4):
            layer.send(f"many!{i}", {"i": i})
        return await asyncio.wait_for(asyncio.gather(*tasks), 10)

    got = asyncio.run(main())
    assert sorted(channel for channel, _ in got) == [f"many!{i}" for i in range(4)]


def test_async_receive_times_out_with_none(make_redis_layer):
    layer = make_redis_layer(receive_timeout=0.3)
    assert asyncio.run(layer.receive_async(["quiet"])) == (None, None)
    assert layer.receive(["quiet"], block=True) == (None, None)


def _send_later(hosts, prefix, channel, delay):
    time.sleep(delay)
    RedisChannelLayer(hosts=hosts, prefix=prefix).send(channel, {"from": "child"})


def test_async_receive_from_another_process(make_redis_layer):
    layer = make_redis_layer(receive_timeout=10)
    sender = CTX.Process(target=_send_later, args=(layer.hosts, layer.prefix, "aio!x", 0.2))
    sender.start()
    try:
        assert asyncio.run(layer.receive_async(["aio!"])) == ("aio!x", {"from": "child"})
    finally:
        sender.join(10)


def _twisted_child(layer, out):
    from twisted.internet import defer, task

    client = redis.Redis.from_url(layer.hosts[0])

    @defer.inlineCallbacks
    def main(reactor):
        # several outstanding Deferreds, each gets its own message
        ds = [layer.receive_twisted(["tw!"]) for _ in range(3)]
        for i in range(3):
            reactor.callLater(0.05 * (i + 1), layer.send, f"tw!{i}", {"i": i})
        got = yield defer.gatherResults(ds)
        out.put(sorted(channel for channel, _ in got))
        # a Deferred cancelled after the server popped its message gives the message back
        d = layer.receive_twisted(["tc"])
        d.addErrback(lambda failure: failure.trap(defer.CancelledError))
        yield task.deferLater(reactor, 0.2, lambda: None)
        layer.send("tc", {"kept": 3})
        time.sleep(0.05)
        popped = _pending(layer, client, "tc") == 0
        d.cancel()
        yield d
        out.put((popped, layer.receive(["tc"])))
        # and a quiet channel times out with (None, None)
        out.put((yield layer.receive_twisted(["quiet"])))

    task.react(main)


def test_receive_twisted_concurrent_cancel_and_timeout(make_redis_layer):
    layer = make_redis_layer(receive_timeout=1.0)
    out = CTX.Queue()
    child = CTX.Process(target=_twisted_child, args=(layer, out))
    child.start()
    try:
        assert out.get(timeout=20) == [f"tw!{i}" for i in range(3)]
        assert out.get(timeout=20) == (True, ("tc", {"kept": 3}))
        assert out.get(timeout=20) == (None, None)
    finally:
        child.join(10)
        if child.is_alive():
            child.kill()
    assert child.exitcode == 0
