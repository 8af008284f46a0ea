"""Data binding in-process: ORM signals -> group frames, and inbound frames -> ORM (real layer)."""
import json

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured

from django_glue import Group
from django_glue.binding import Binding
from django_glue.binding.websockets import WebsocketBinding, WebsocketBindingWithMembers
from django_glue.generic.websockets import WebsocketDemultiplexer
from django_glue.routing import route
from django_glue.test import ChannelTestCase, Client, WSClient, apply_routes
from tests.django_glue.project.chat.models import ChatMessage


def room_binding(**attrs):
    """A binding of ChatMessage whose groups are ``room-<room>``; unregister it after the test."""

    def group_names(cls, instance):
        return [f"room-{instance.room}"] if instance.room != "hidden" else []

    def has_permission(self, user, action, pk):
        return action != "delete" or user.is_authenticated

    namespace = {
        "model": "chat.ChatMessage",
        "stream": "messages",
        "fields": ["room", "message"],
        "group_names": classmethod(group_names),
        "has_permission": has_permission,
        **attrs,
    }
    base = namespace.pop("base", WebsocketBinding)
    return type("RoomBinding", (base,), namespace)


class BindingCase(ChannelTestCase):
    def setUp(self):
        self.binding = room_binding()
        self.addCleanup(self.binding.unregister)

    def member(self, group):
        channel = f"member.{group}"
        Group(group).add(channel)
        return channel

    def frames(self, channel):
        found = []
        while (message := self.get_next_message(channel)) is not None:
            found.append(json.loads(message["text"]))
        return found


class OutboundTests(BindingCase):
    def test_create_update_delete_reach_the_group(self):
        a = self.member("room-a")
        obj = ChatMessage.objects.create(room="a", message="hi")
        obj.message = "edited"
        obj.save()
        pk = obj.pk
        obj.delete()
        frames = self.frames(a)
        self.assertEqual([f["stream"] for f in frames], ["messages"] * 3)
        self.assertEqual(
            [f["payload"] for f in frames],
            [
                {"action": "create", "pk": pk, "data": {"room": "a", "message": "hi"}, "model": "chat.chatmessage"},
                {"action": "update", "pk": pk, "data": {"room": "a", "message": "edited"}, "model": "chat.chatmessage"},
                {"action": "delete", "pk": pk, "data": {"room": "a", "message": "edited"}, "model": "chat.chatmessage"},
            ],
        )

    def test_moving_between_groups_deletes_from_old_and_creates_in_new(self):
        a, b = self.member("room-a"), self.member("room-b")
        obj = ChatMessage.objects.create(room="a", message="m")
        self.frames(a)
        obj.room = "b"
        obj.save()
        self.assertEqual([f["payload"]["action"] for f in self.frames(a)], ["delete"])
        self.assertEqual([(f["payload"]["action"], f["payload"]["data"]["room"]) for f in self.frames(b)],
                         [("create", "b")])
        obj.room = "hidden"  # visible to no group any more
        obj.save()
        self.assertEqual([f["payload"]["action"] for f in self.frames(b)], ["delete"])

    def test_group_in_both_gets_update(self):
        both = self.member("everyone")
        binding = room_binding(group_names=classmethod(lambda cls, i: ["everyone", f"room-{i.room}"]))
        self.addCleanup(binding.unregister)
        a = self.member("room-a")
        obj = ChatMessage.objects.create(room="a", message="m")
        obj.room = "b"
        obj.save()
        actions = [f["payload"]["action"] for f in self.frames(both)]
        # "everyone" hears from both bindings: the room binding saw room-a only (not everyone).
        self.assertEqual(actions, ["create", "update"])
        self.assertEqual([f["payload"]["action"] for f in self.frames(a)], ["create", "create", "delete", "delete"])

    def test_empty_serialisation_sends_nothing(self):
        self.binding.unregister()
        quiet = room_binding(serialize=lambda self, instance, action: {} if action == "update" else {"n": 1})
        self.addCleanup(quiet.unregister)
        a = self.member("room-a")
        obj = ChatMessage.objects.create(room="a", message="m")
        obj.save()
        self.assertEqual([f["payload"] for f in self.frames(a)], [{"n": 1}])

    def test_exclude_and_members(self):
        self.binding.unregister()
        binding = room_binding(base=WebsocketBindingWithMembers, fields=None, exclude=["message"],
                               send_members=["message.upper", "pk"])
        self.addCleanup(binding.unregister)
        a = self.member("room-a")
        obj = ChatMessage.objects.create(room="a", message="shout")
        (frame,) = self.frames(a)
        self.assertEqual(frame["payload"]["data"], {"room": "a", "message__upper": "SHOUT", "pk": obj.pk})

    def test_unregister_stops_sending(self):
        a = self.member("room-a")
        self.binding.unregister()
        ChatMessage.objects.create(room="a", message="m")
        self.assertEqual(self.frames(a), [])


class Streams(WebsocketDemultiplexer):
    http_user = True
    consumers = {}  # filled per test with the binding's consumer


class InboundTests(BindingCase):
    def connected(self):
        Streams.consumers = {"messages": self.binding.consumer}
        self.addCleanup(setattr, Streams, "consumers", {})
        routes = apply_routes([Streams.as_route(path=r"^/live/$")])
        routes.enter()
        self.addCleanup(routes.exit)
        client = WSClient()
        client.send_and_consume("websocket.connect", path="/live/")
        return client

    def send(self, client, payload):
        client.send_and_consume("websocket.receive", text={"stream": "messages", "payload": payload}, path="/live/")

    def test_create_update_through_the_demultiplexer(self):
        client = self.connected()
        self.send(client, {"action": "create", "data": {"room": "a", "message": "from client", "id": 999}})
        obj = ChatMessage.objects.get()
        self.assertEqual((obj.room, obj.message), ("a", "from client"))
        self.assertNotEqual(obj.pk, 999)  # the pk is not a bound field
        self.send(client, {"action": "update", "pk": obj.pk, "data": {"message": "changed"}})
        obj.refresh_from_db()
        self.assertEqual(obj.message, "changed")

    def test_update_sets_only_exposed_fields(self):
        self.binding.unregister()
        self.binding = room_binding(fields=["message"])
        self.addCleanup(self.binding.unregister)
        obj = ChatMessage.objects.create(room="a", message="m")
        client = self.connected()
        self.send(client, {"action": "update", "pk": obj.pk, "data": {"room": "elsewhere", "message": "new"}})
        obj.refresh_from_db()
        self.assertEqual((obj.room, obj.message), ("a", "new"))

    def test_permission_gates_the_action(self):
        obj = ChatMessage.objects.create(room="a", message="m")
        client = self.connected()
        self.send(client, {"action": "delete", "pk": obj.pk})  # anonymous: refused
        self.assertTrue(ChatMessage.objects.filter(pk=obj.pk).exists())
        user = User.objects.create_user("binder", password="pw")
        client = WSClient()
        client.force_login(user)
        client.send_and_consume("websocket.connect", path="/live/")
        self.send(client, {"action": "delete", "pk": obj.pk})
        self.assertFalse(ChatMessage.objects.filter(pk=obj.pk).exists())

    def test_bad_frames_raise_clear_errors(self):
        client = self.connected()
        cases = [
            ({"pk": 1}, "action"),
            ({"action": "explode"}, "unknown binding action"),
            ({"action": "update", "data": {"message": "x"}}, "needs the object's 'pk'"),
            ({"action": "create", "data": ["not", "a", "dict"]}, "'data' must be an object"),
        ]
        for payload, words in cases:
            with self.subTest(payload=payload), pytest.raises(ValueError, match=words):
                self.send(client, payload)
        self.assertEqual(ChatMessage.objects.count(), 0)


class ConfigurationTests(ChannelTestCase):
    def test_fields_or_exclude_required(self):
        with pytest.raises(ImproperlyConfigured, match="exactly one of 'fields'"):
            room_binding(fields=None)
        with pytest.raises(ImproperlyConfigured, match="exactly one of 'fields'"):
            room_binding(exclude=["room"])

    def test_stream_and_model_checked(self):
        with pytest.raises(ImproperlyConfigured, match="stream"):
            room_binding(stream=None)
        with pytest.raises(ImproperlyConfigured, match="app_label.ModelName"):
            room_binding(model="no-dot")
        with pytest.raises(ImproperlyConfigured, match="app_label.ModelName"):
            room_binding(model=42)
        with pytest.raises(ImproperlyConfigured, match="RoomBinding.model = 'chat.Nope': App 'chat' doesn't have a 'Nope' model"):
            room_binding(model="chat.Nope")

    def test_abstract_binding_is_not_registered(self):
        class Abstract(Binding):
            fields = ["room"]  # no model: abstract, no check and no signal

        self.assertIsNone(Abstract.model)

    def test_label_resolves_to_model(self):
        binding = room_binding()
        self.addCleanup(binding.unregister)
        self.assertIs(binding.model, ChatMessage)
        self.assertEqual(binding.model_label, "chat.chatmessage")

    def test_abstract_hooks_say_what_to_define(self):
        binding = type("Bare", (Binding,), {"model": ChatMessage, "fields": ["room"]})
        self.addCleanup(binding.unregister)
        Group("room-a")  # no member: nothing to send, but group_names is still required
        with pytest.raises(NotImplementedError, match="group_names"):
            ChatMessage.objects.create(room="a", message="m")


class TransportNeutralTests(BindingCase):
    """The base ``Binding`` with a transport of its own: plain dict messages on a channel."""

    def setUp(self):
        super().setUp()
        self.binding.unregister()
        seen_sessions = self.seen_sessions = []

        class Plain(Binding):
            model = ChatMessage
            stream = "plain"
            fields = ["room", "message"]
            channel_session_user = False
            channel_session = True

            @classmethod
            def group_names(cls, instance):
                return ["plain-watchers"]

            def serialize(self, instance, action):
                return {"action": action, "room": instance.room, "created": self.signal_kwargs.get("created")}

            @classmethod
            def encode(cls, stream, payload):
                return {"stream": stream, "payload": payload}

            def deserialize(self, message):
                seen_sessions.append(message.channel_session.session_key)
                return message["action"], message.get("pk"), message.get("data")

            def has_permission(self, user, action, pk):
                return user is None  # no user decorator: message.user is never set

        self.addCleanup(Plain.unregister)
        routes = apply_routes([route("binding.requests", Plain.consumer)])
        routes.enter()
        self.addCleanup(routes.exit)

    def test_inbound_actions_and_outbound_messages(self):
        watcher = self.member("plain-watchers")
        client = Client()
        client.send_and_consume("binding.requests", {"action": "create", "data": {"room": "r", "message": "m", "id": 50}})
        obj = ChatMessage.objects.get()
        self.assertNotEqual(obj.pk, 50)
        client.send_and_consume("binding.requests", {"action": "update", "pk": obj.pk, "data": {"message": "m2"}})
        obj.refresh_from_db()
        self.assertEqual(obj.message, "m2")
        client.send_and_consume("binding.requests", {"action": "delete", "pk": obj.pk})
        self.assertFalse(ChatMessage.objects.exists())
        received = []
        while (message := self.get_next_message(watcher)) is not None:
            received.append(message.content)
        self.assertEqual(received, [
            {"stream": "plain", "payload": {"action": "create", "room": "r", "created": True}},
            {"stream": "plain", "payload": {"action": "update", "room": "r", "created": False}},
            {"stream": "plain", "payload": {"action": "delete", "room": "r", "created": None}},
        ])
        self.assertEqual(len(set(self.seen_sessions)), 1)  # one channel session for the client
