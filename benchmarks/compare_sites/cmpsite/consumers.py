"""Channels 4 side of the broadcast comparison: the same behaviour as ``routing.py`` has for ours.

A socket on ``/ws/`` joins the group ``bench`` before it is accepted; a text frame from any socket
(the sender uses ``/ws/send/``, which does not join) is sent to the whole group unchanged."""
from channels.generic.websocket import AsyncWebsocketConsumer

GROUP = "bench"


class BroadcastConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        self.member = self.scope["path"] == "/ws/"
        if self.member:
            await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()

    async def receive(self, text_data=None, bytes_data=None):
        await self.channel_layer.group_send(GROUP, {"type": "bench.message", "text": text_data})

    async def bench_message(self, event):
        await self.send(text_data=event["text"])

    async def disconnect(self, code):
        if getattr(self, "member", False):
            await self.channel_layer.group_discard(GROUP, self.channel_name)
