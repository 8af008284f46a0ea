"""Ours (django_glue on asgi_ipc) side of the broadcast comparison, the same behaviour as
``consumers.py``: a socket on ``/ws/`` joins the group ``bench`` before it is accepted; a text frame
from any socket (the sender uses ``/ws/send/``) goes to the whole group unchanged. HTTP requests
take django_glue's default route to the Django view."""
from django_glue import Group
from django_glue.routing import route

GROUP = "bench"


def ws_connect(message):
    if message.content.get("path") == "/ws/":
        Group(GROUP).add(message.reply_channel)
    message.reply_channel.send({"accept": True})


def ws_receive(message):
    Group(GROUP).send({"text": message.content["text"]})


def ws_disconnect(message):
    if message.content.get("path") == "/ws/":
        Group(GROUP).discard(message.reply_channel)


channel_routing = [
    route("websocket.connect", ws_connect),
    route("websocket.receive", ws_receive),
    route("websocket.disconnect", ws_disconnect),
]
