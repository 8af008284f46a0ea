"""Routing for the cluster tests (HELLOSITE_ROUTING=hellosite.cluster_routing.channel_routing):
every WebSocket joins the group "room"; a frame "say:X" broadcasts X to the group, "echo:X" answers
X to the sender, a frame
"job:N" sends job N to the shared channel "thumbnail", whose consumer prints which site took it."""
import os

from django_glue import Channel, Group
from django_glue.routing import route


def connect(message):
    Group("room").add(message.reply_channel)  # before the accept: joined once the handshake is done
    message.reply_channel.send({"accept": True})


def receive(message):
    text = message.content.get("text", "")
    kind, _, value = text.partition(":")
    if kind == "say":
        Group("room").send({"text": value})
    elif kind == "echo":  # the connection's own messages only
        message.reply_channel.send({"text": value})
    elif kind == "job":
        Channel("thumbnail").send({"n": value})
        message.reply_channel.send({"text": f"queued {value}"})


def disconnect(message):
    Group("room").discard(message.reply_channel)


def thumbnail(message):
    print(f"job {message.content.get('n')} taken by {os.environ.get('HELLOSITE_PREFIX')}", flush=True)


channel_routing = [route("websocket.connect", connect), route("websocket.receive", receive),
                   route("websocket.disconnect", disconnect), route("thumbnail", thumbnail)]
