"""A bare ASGI 3 application on the Channels 4 layer, for running under uvicorn and gunicorn.

``GET /send?text=T`` group-sends ``T`` to group ``g``; a WebSocket on ``/ws`` is told the serving
process's pid, joins ``g`` through its own ``new_channel()`` and gets every group message as a
text frame. The layer's prefix comes from ``C4APP_PREFIX``.
"""

from __future__ import annotations

import asyncio
import os
from urllib.parse import parse_qs

from asgi_ipc.channels import IPCChannelLayer

_layer: IPCChannelLayer | None = None


def layer() -> IPCChannelLayer:
    global _layer
    if _layer is None:
        _layer = IPCChannelLayer(prefix=os.environ["C4APP_PREFIX"], message_memory=4 * 2**20,
                                 channels=256, groups=64, group_members=512, waiters=64)
    return _layer


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
    elif scope["type"] == "http":
        text = parse_qs(scope["query_string"].decode()).get("text", [""])[0]
        await layer().group_send("g", {"type": "chat.message", "text": text})
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": str(os.getpid()).encode()})
    elif scope["type"] == "websocket":
        await _websocket(receive, send)


async def _websocket(receive, send):
    await receive()  # websocket.connect
    channel = await layer().new_channel()
    await layer().group_add("g", channel)
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": f"pid {os.getpid()}"})
    relay = asyncio.ensure_future(_relay(channel, send))
    try:
        while (await receive())["type"] != "websocket.disconnect":
            pass
    finally:
        relay.cancel()
        await layer().group_discard("g", channel)


async def _relay(channel, send):
    while True:
        message = await layer().receive(channel)
        await send({"type": "websocket.send", "text": message["text"]})
