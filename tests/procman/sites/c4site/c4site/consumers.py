"""WebSocket and worker consumers of the test site."""
import json
import os

from channels.consumer import AsyncConsumer
from channels.generic.websocket import AsyncWebsocketConsumer


class RoomConsumer(AsyncWebsocketConsumer):
    """``/ws/<room>/``: says which process serves it, joins the room's group, and broadcasts every
    text frame to the group (with the pid of the process that received it)."""

    async def connect(self):
        self.group = "room-" + self.scope["url_route"]["kwargs"]["room"]
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send(json.dumps({"hello": os.getpid()}))

    async def disconnect(self, code):
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        await self.channel_layer.group_send(self.group, {"type": "room.message", "text": text_data,
                                                         "from": os.getpid()})

    async def room_message(self, event):
        await self.send(json.dumps({"text": event["text"], "from": event["from"], "to": os.getpid()}))


class TaskConsumer(AsyncConsumer):
    """The ``tasks`` channel (run by ``--worker tasks``): answers the ``room-results`` group."""

    async def task_run(self, message):
        await self.channel_layer.group_send("room-results", {"type": "room.message",
                                                             "text": "done: " + message["text"],
                                                             "from": os.getpid()})
