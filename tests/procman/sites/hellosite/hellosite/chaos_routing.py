"""Routing for the chaos test: every WebSocket joins one room; a frame is broadcast to it."""
from django_glue import Group
from django_glue.routing import route


def connect(message):
    message.reply_channel.send({"accept": True})
    Group("chaos").add(message.reply_channel)


def receive(message):
    Group("chaos").send({"text": message.content.get("text", "")})


def disconnect(message):
    Group("chaos").discard(message.reply_channel)


channel_routing = [
    route("websocket.connect", connect),
    route("websocket.receive", receive),
    route("websocket.disconnect", disconnect),
]
