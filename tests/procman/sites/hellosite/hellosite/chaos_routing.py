"""Routing for the chaos and fast-failure tests: every WebSocket joins one room and a frame is
broadcast to it; a frame "sleep <seconds>" holds its consumer that long first."""
import time

from django_glue import Group
from django_glue.routing import route


def connect(message):
    message.reply_channel.send({"accept": True})
    Group("chaos").add(message.reply_channel)


def receive(message):
    text = message.content.get("text", "")
    if text.startswith("sleep "):
        time.sleep(float(text.split()[1]))
    Group("chaos").send({"text": text})


def disconnect(message):
    Group("chaos").discard(message.reply_channel)


channel_routing = [
    route("websocket.connect", connect),
    route("websocket.receive", receive),
    route("websocket.disconnect", disconnect),
]
