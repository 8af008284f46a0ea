"""Routing of the binding site: a demultiplexer with a bound stream and an echo stream."""
from django_glue.generic.websockets import JsonWebsocketConsumer, WebsocketDemultiplexer

from .things.bindings import ThingBinding


class Echo(JsonWebsocketConsumer):
    def receive(self, content, **kwargs):
        self.send({"echo": content})


class Things(WebsocketDemultiplexer):
    consumers = {"things": ThingBinding.consumer, "echo": Echo}

    def connection_groups(self, room=None, **kwargs):
        return [f"things-{room}"]


channel_routing = [Things.as_route(path=r"^/things/(?P<room>[a-z0-9]+)/$")]
