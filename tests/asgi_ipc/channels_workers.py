"""Process bodies for the Channels 4 layer tests (started with multiprocessing ``spawn``).

Every body builds its own ``asgi_ipc.channels.IPCChannelLayer`` from ``config(prefix)``, reports
through a ``multiprocessing`` queue, and bounds every wait, so a broken layer fails the test
instead of hanging it.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from typing import Any

SIZES = dict(message_memory=4 * 2**20, channels=256, groups=64, group_members=4096,
             max_message_size=64 * 1024)


def config(prefix: str, **extra: Any) -> dict[str, Any]:
    """The CONFIG every process of one test uses (sizes must match across processes)."""
    return dict(prefix=prefix, **SIZES, **extra)


def make(prefix: str, **extra: Any):
    from asgi_ipc.channels import IPCChannelLayer

    return IPCChannelLayer(**config(prefix, **extra))


def consume(prefix: str, channel: str, results, timeout: float, cancel_every: float) -> None:
    """Report ``("ready", pid)``, then receive ``channel`` until a ``stop`` message, many
    receives cut short by ``wait_for`` (``cancel_every`` seconds); report ``(pid, [ids])``."""

    async def main() -> list[int]:
        layer = make(prefix, capacity=10000)
        results.put(("ready", os.getpid()))
        got: list[int] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                message = await asyncio.wait_for(layer.receive(channel),
                                                 random.uniform(0, cancel_every))
            except asyncio.TimeoutError:
                continue
            if message.get("stop"):
                break
            got.append(message["id"])
        await layer.close()
        return got

    results.put((os.getpid(), asyncio.run(main())))


def member(prefix: str, group: str, count: int, results, timeout: float) -> None:
    """Join ``group`` with two specific channels, report them, then receive ``count`` messages
    on each and report ``(channel, [ids])`` per channel."""

    async def main() -> None:
        layer = make(prefix)
        names = [await layer.new_channel(), await layer.new_channel("other")]
        for name in names:
            await layer.group_add(group, name)
        results.put(("ready", names))

        async def drain(name: str) -> None:
            got = []
            try:
                for _ in range(count):
                    got.append((await asyncio.wait_for(layer.receive(name), timeout))["id"])
            except asyncio.TimeoutError:
                pass
            results.put((name, got))

        await asyncio.gather(*(drain(name) for name in names))
        await layer.close()

    asyncio.run(main())


def echo(prefix: str, results, timeout: float) -> None:
    """Report a specific channel, then answer every message on it to its ``reply`` channel
    until a ``stop`` message."""

    async def main() -> None:
        layer = make(prefix)
        name = await layer.new_channel()
        results.put(("ready", name))
        while True:
            message = await asyncio.wait_for(layer.receive(name), timeout)
            if message.get("stop"):
                break
            await layer.send(message["reply"], {"id": message["id"], "pid": os.getpid()})
        await layer.close()

    asyncio.run(main())


def hold(prefix: str, results, release, timeout: float, send_to: str | None = None) -> None:
    """Attach, optionally send one message, report ``attached``, then stay until ``release``
    is set (at most ``timeout`` s) and exit cleanly: the layer closes at interpreter exit, as
    under Channels."""

    async def main() -> None:
        layer = make(prefix)
        if send_to is not None:
            await layer.send(send_to, {"id": os.getpid()})
        results.put(("attached", os.getpid()))

    asyncio.run(main())
    release.wait(timeout)


def chat_consumer_class():
    """The tutorial's chat consumer, reduced: join ``room`` on connect, relay ``chat.message``
    group events to the socket, leave on disconnect."""
    from channels.generic.websocket import AsyncJsonWebsocketConsumer

    class Chat(AsyncJsonWebsocketConsumer):
        async def connect(self):
            await self.channel_layer.group_add("room", self.channel_name)
            await self.accept()

        async def disconnect(self, code):
            await self.channel_layer.group_discard("room", self.channel_name)

        async def receive_json(self, content):
            await self.channel_layer.group_send("room", {"type": "chat.message", **content})

        async def chat_message(self, event):
            await self.send_json({"text": event["text"]})

    return Chat


def chat(prefix: str, name: str, results, commands, timeout: float) -> None:
    """A Channels 4 consumer under ``WebsocketCommunicator`` with this layer from settings:
    report ``(name, "joined")``, then on command ``"say"`` send a chat line, on ``"read"`` report
    the next frame, on ``"close"`` disconnect (its receive task is cancelled) and stop."""
    import django
    from django.conf import settings

    settings.configure(CHANNEL_LAYERS={"default": {"BACKEND": "asgi_ipc.channels.IPCChannelLayer",
                                                   "CONFIG": config(prefix)}})
    django.setup()
    from channels.testing import WebsocketCommunicator

    async def main() -> None:
        communicator = WebsocketCommunicator(chat_consumer_class().as_asgi(), "/ws/chat/")
        connected, _ = await communicator.connect(timeout)
        assert connected
        results.put((name, "joined"))
        loop = asyncio.get_running_loop()
        while True:
            command = await loop.run_in_executor(None, commands.get, True, timeout)
            if command == "say":
                await communicator.send_json_to({"text": f"hello from {name}"})
            elif command == "read":
                results.put((name, await communicator.receive_json_from(timeout)))
            else:
                await communicator.disconnect()
                results.put((name, "closed"))
                return

    asyncio.run(main())
