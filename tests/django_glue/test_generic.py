"""Generic consumers: BaseConsumer, WebsocketConsumer, JsonWebsocketConsumer, demultiplexer."""
from django.contrib.auth.models import User

from django_glue import Group
from django_glue.exceptions import SendNotAvailableOnDemultiplexer
from django_glue.generic import BaseConsumer
from django_glue.generic.websockets import (
    JsonWebsocketConsumer,
    WebsocketConsumer,
    WebsocketDemultiplexer,
    WebsocketMultiplexer,
)
from django_glue.test import ChannelTestCase, Client, WSClient, apply_routes

seen = []


class Worky(BaseConsumer):
    method_mapping = {"work.a": "handle_a"}
    channel_session = True

    def handle_a(self, message, **kwargs):
        message.channel_session["hits"] = message.channel_session.get("hits", 0) + 1
        seen.append((kwargs, message.channel_session["hits"]))


class Echo(WebsocketConsumer):
    groups = ["everyone"]

    def receive(self, text=None, bytes=None, **kwargs):
        if text is not None:
            self.send(text=text.upper())
        else:
            self.send(bytes=bytes[::-1], close=True)

    def disconnect(self, message, **kwargs):
        seen.append(("disconnect", self.path))


class Rejecting(WebsocketConsumer):
    def connect(self, message, **kwargs):
        self.close()


class WhoAmI(WebsocketConsumer):
    http_user = True

    def receive(self, text=None, bytes=None, **kwargs):
        self.send(text=self.message.user.username)


class Counter(WebsocketConsumer):
    strict_ordering = True
    channel_session = True

    def receive(self, text=None, bytes=None, **kwargs):
        seen.append(text)


class JsonEcho(JsonWebsocketConsumer):
    def receive(self, content, **kwargs):
        self.send({"got": content, "kwargs": sorted(k for k in kwargs if k != "multiplexer")})


class Demux(WebsocketDemultiplexer):
    consumers = {"echo": JsonEcho, "other": JsonEcho}


class GenericTests(ChannelTestCase):
    def setUp(self):
        seen.clear()

    def test_base_consumer_route_session_and_kwargs(self):
        with apply_routes([Worky.as_route(path=r"^/(?P<name>\w+)$")]):
            client = Client()
            client.send_and_consume("work.a", {"path": "/x"})
            client.send_and_consume("work.a", {"path": "/x"})
        self.assertEqual(seen, [({"name": "x"}, 1), ({"name": "x"}, 2)])
        self.assertEqual(Worky.channel_names(), {"work.a"})

    def test_as_route_attrs_make_a_subclass(self):
        r = Worky.as_route(attrs={"channel_session": False})
        self.assertIsNot(r.consumer, Worky)
        self.assertTrue(Worky.channel_session)

    @apply_routes([Echo.as_route()])
    def test_websocket_consumer_frames_groups_disconnect(self):
        client = WSClient()
        client.send_and_consume("websocket.connect", path="/echo")
        self.assertEqual(self.layer_group_members("everyone"), {client.reply_channel})
        client.send_and_consume("websocket.receive", text="hello", path="/echo")
        self.assertEqual(client.receive(json=False), "HELLO")
        client.send_and_consume("websocket.receive", {"bytes": b"abc"}, path="/echo")
        self.assertEqual(client.receive(json=False), {"bytes": b"cba", "close": True})
        client.send_and_consume("websocket.disconnect", {"code": 1000}, path="/echo")
        self.assertEqual(self.layer_group_members("everyone"), set())
        self.assertEqual(seen, [("disconnect", "/echo")])

    def layer_group_members(self, name):
        return set(Group(name).channel_layer.group_channels(name))

    @apply_routes([Rejecting.as_route()])
    def test_overridden_connect_can_reject(self):
        client = WSClient()
        client.send_and_consume("websocket.connect", path="/", check_accept=False)
        self.assertEqual(client.receive(json=False), {"close": True})

    @apply_routes([WhoAmI.as_route()])
    def test_http_user(self):
        User.objects.create_user("bob", password="pw")
        client = WSClient()
        client.login(username="bob", password="pw")
        client.send_and_consume("websocket.connect", path="/")
        client.send_and_consume("websocket.receive", text="?", path="/")
        self.assertEqual(client.receive(json=False), "bob")

    @apply_routes([Counter.as_route()])
    def test_strict_ordering(self):
        client = WSClient(ordered=True)
        client.send_and_consume("websocket.connect", path="/")
        client.send("websocket.receive", text="1", path="/")
        client.send("websocket.receive", text="2", path="/")
        # deliver order 2 first: take both, swap them
        layer = Group("x").channel_layer
        first = layer.receive(["websocket.receive"], block=False)[1]
        second = layer.receive(["websocket.receive"], block=False)[1]
        layer.send("websocket.receive", second)
        layer.send("websocket.receive", first)
        for _ in range(3):
            client.consume("websocket.receive", fail_on_none=False)
        self.assertEqual(seen, ["1", "2"])

    @apply_routes([JsonEcho.as_route(path=r"^/(?P<room>\w+)$")])
    def test_json_consumer(self):
        client = WSClient()
        client.send_and_consume("websocket.connect", path="/lobby")
        client.send_and_consume("websocket.receive", text={"a": [1, 2]}, path="/lobby")
        self.assertEqual(client.receive(), {"got": {"a": [1, 2]}, "kwargs": ["room"]})
        with self.assertRaises(ValueError):
            client.send_and_consume("websocket.receive", {"bytes": b"x"}, path="/lobby")

    @apply_routes([Demux.as_route()])
    def test_demultiplexer(self):
        client = WSClient()
        client.send_and_consume("websocket.connect", path="/")  # exactly one accept
        self.assertIsNone(client.receive())
        client.send_and_consume("websocket.receive", text={"stream": "echo", "payload": {"v": 1}}, path="/")
        self.assertEqual(client.receive(), {"stream": "echo", "payload": {"got": {"v": 1}, "kwargs": []}})
        with self.assertRaisesRegex(ValueError, "no consumer for stream"):
            client.send_and_consume("websocket.receive", text={"stream": "nope", "payload": {}}, path="/")
        with self.assertRaisesRegex(ValueError, "payload"):
            client.send_and_consume("websocket.receive", text={"stream": "echo", "payload": 3}, path="/")
        # the sub-consumer class is not patched: used directly it still sends plain JSON
        self.assertNotIn("send", vars(JsonEcho))
        with self.assertRaises(SendNotAvailableOnDemultiplexer):
            Demux.group_send("g", {"x": 1})

    def test_multiplexer_group_send(self):
        client = Client()
        client.join_group("watchers")
        WebsocketMultiplexer.group_send("watchers", "news", {"id": 7})
        self.assertEqual(client.receive(), {"text": '{"stream": "news", "payload": {"id": 7}}'})
        JsonWebsocketConsumer.group_send("watchers", {"plain": True}, close=True)
        self.assertEqual(client.receive(), {"text": '{"plain": true}', "close": True})
