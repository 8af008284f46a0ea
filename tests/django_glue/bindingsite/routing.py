"""Routing of the binding site: a demultiplexer with a bound stream and an echo stream."""
from django_glue.binding.websockets import WebsocketBinding
from django_glue.generic.websockets import JsonWebsocketConsumer, WebsocketDemultiplexer


class ThingBinding(WebsocketBinding):
    model = "things.Thing"
    stream = "things"
    fields = ["room", "name", "value"]

    @classmethod
    def group_names(cls, instance):
        return [f"things-{instance.room}"]

    def has_permission(self, user, action, pk):
        return action != "delete"  # the page may create and update, not delete


class Echo(JsonWebsocketConsumer):
    def receive(self, content, **kwargs):
        self.send({"echo": content})


class Things(WebsocketDemultiplexer):
    consumers = {"things": ThingBinding.consumer, "echo": Echo}

    def connection_groups(self, room=None, **kwargs):
        return [f"things-{room}"]


channel_routing = [Things.as_route(path=r"^/things/(?P<room>[a-z0-9]+)/$")]
