"""Routing of the binding site: a demultiplexer with a bound stream and an echo stream."""
import json

from django_glue.generic.websockets import JsonWebsocketConsumer, WebsocketDemultiplexer
from django_glue.routing import route

from .things.bindings import ThingBinding


class Echo(JsonWebsocketConsumer):
    def receive(self, content, **kwargs):
        self.send({"echo": content})


class Things(WebsocketDemultiplexer):
    consumers = {"things": ThingBinding.consumer, "echo": Echo}

    def connection_groups(self, room=None, **kwargs):
        return [f"things-{room}"]


def plain_echo(message):
    """Not multiplexed: a JSON frame back, a frame that is not JSON, then JSON again."""
    message.reply_channel.send({"text": json.dumps({"echo": json.loads(message["text"])})})
    message.reply_channel.send({"text": "this is not JSON"})
    message.reply_channel.send({"text": json.dumps(["done"])})


channel_routing = [
    Things.as_route(path=r"^/things/(?P<room>[a-z0-9]+)/$"),
    route("websocket.receive", plain_echo, path=r"^/plain/$"),
]
