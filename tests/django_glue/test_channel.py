"""Channel, Group, Message and consumer atomicity (buffered sends, bounded ChannelFull retry)."""

from django_glue import Channel, Group
from django_glue import outbox as outbox_module
from django_glue.asgi import channel_layers
from django_glue.message import Message
from django_glue.outbox import OutboxFull, outbox
from django_glue.signals import consumer_finished, consumer_started
from django_glue.test import ChannelTestCase


class ChannelGroupTests(ChannelTestCase):
    def test_send_outside_consumer_is_immediate(self):
        Channel("work").send({"a": 1})
        self.assertEqual(self.get_next_message("work", require=True).content, {"a": 1})

    def test_send_rejects_non_dicts_and_bad_names(self):
        with self.assertRaises(TypeError):
            Channel("work").send(["not", "a", "dict"])
        with self.assertRaises(ValueError):
            Group("g").send("text")
        with self.assertRaises(TypeError):
            Channel("")

    def test_bytes_names_are_decoded(self):
        self.assertEqual(Channel(b"work").name, "work")

    def test_sends_inside_consumer_wait_for_consumer_finished(self):
        Group("g").add("member")
        consumer_started.send(sender=None, environ={})
        try:
            Channel("work").send({"n": 1})
            Group("g").send({"n": 2})
            Channel("work").send({"n": 3}, immediately=True)
            self.assertEqual(self.get_next_message("work").content, {"n": 3})
            self.assertIsNone(self.get_next_message("work"))
            self.assertIsNone(self.get_next_message("member"))
        finally:
            consumer_finished.send(sender=None)
        self.assertEqual(self.get_next_message("work").content, {"n": 1})
        self.assertEqual(self.get_next_message("member").content, {"n": 2})

    def test_group_add_discard(self):
        group = Group("room")
        group.add(Channel("a"))
        group.add("b")
        group.discard("a")
        group.send({"hi": True})
        self.assertIsNone(self.get_next_message("a"))
        self.assertEqual(self.get_next_message("b").content, {"hi": True})

    def test_full_channel_raises_at_once_outside_consumer(self):
        layer = channel_layers["default"]
        for i in range(layer.capacity):
            Channel("busy").send({"i": i})
        with self.assertRaises(layer.ChannelFull):
            Channel("busy").send({"i": "over"})

    def test_flush_retries_for_bounded_time_then_reports(self):
        layer = channel_layers["default"]
        for i in range(layer.capacity):
            Channel("busy").send({"i": i})
        old = outbox_module.FLUSH_RETRY_SECONDS
        outbox_module.FLUSH_RETRY_SECONDS = 0.2
        try:
            consumer_started.send(sender=None, environ={})
            Channel("busy").send({"i": "late"})
            Channel("free").send({"ok": 1})
            with self.assertRaises(OutboxFull) as caught:
                consumer_finished.send(sender=None)
        finally:
            outbox_module.FLUSH_RETRY_SECONDS = old
        self.assertIn("'busy'", str(caught.exception))
        self.assertIn("capacity", str(caught.exception))
        # the message after the full one still went out, and the outbox is disarmed
        self.assertEqual(self.get_next_message("free").content, {"ok": 1})
        self.assertFalse(outbox.armed)

    def test_flush_continues_after_a_failing_send(self):
        consumer_started.send(sender=None, environ={})
        Channel("work").send({"bad": object()})  # not serialisable: fails at flush
        Channel("work").send({"good": 1})
        with self.assertRaises(TypeError):
            consumer_finished.send(sender=None)
        self.assertEqual(self.get_next_message("work").content, {"good": 1})
        self.assertFalse(outbox.armed)

    def test_flush_succeeds_when_room_appears(self):
        layer = channel_layers["default"]
        for i in range(layer.capacity):
            Channel("busy").send({"i": i})
        consumer_started.send(sender=None, environ={})
        Channel("busy").send({"i": "late"})
        self.get_next_message("busy")  # make room before flushing
        consumer_finished.send(sender=None)
        contents = [self.get_next_message("busy").content["i"] for _ in range(layer.capacity)]
        self.assertEqual(contents[-1], "late")


class MessageTests(ChannelTestCase):
    def test_message_is_dict_like_and_has_reply_channel(self):
        layer = channel_layers["default"]
        message = Message({"reply_channel": "r!x", "text": "hi"}, "websocket.receive", layer)
        self.assertEqual(message["text"], "hi")
        self.assertIn("text", message)
        self.assertEqual(message.get("missing", 5), 5)
        self.assertEqual(sorted(message.keys()), ["reply_channel", "text"])
        message["extra"] = 1
        self.assertEqual(message.content["extra"], 1)
        self.assertEqual(message.reply_channel.name, "r!x")
        self.assertEqual(message.channel.name, "websocket.receive")
        self.assertIs(message.channel_layer, layer)
        copy = message.copy()
        copy["text"] = "changed"
        self.assertEqual(message["text"], "hi")
        self.assertIsNone(Message({}, "x", layer).reply_channel)
        with self.assertRaises(TypeError):
            Message([], "x", layer)
