"""channel_session, http_session, channel_and_http_session, enforce_ordering."""
from django.contrib.sessions.models import Session
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from django_glue.asgi import channel_layers
from django_glue.exceptions import ConsumeLater
from django_glue.routing import route
from django_glue.sessions import (
    channel_and_http_session,
    channel_session,
    enforce_ordering,
    http_session,
    session_for_reply_channel,
    wait_channel_name,
)
from django_glue.test import ChannelTestCase, Client, WSClient, apply_routes

log = []


@channel_session
def count(message):
    message.channel_session["n"] = message.channel_session.get("n", 0) + 1
    message.reply_channel.send({"n": message.channel_session["n"]})


@http_session
def show_http(message):
    session = message.http_session
    message.reply_channel.send({"key": session.session_key if session else None,
                                "value": session.get("v") if session else None})


@channel_and_http_session
def both(message):
    message.reply_channel.send({"http": message.http_session.get("v") if message.http_session else None})


@enforce_ordering
def ordered(message):
    log.append(message["text"])


class ChannelSessionTests(ChannelTestCase):
    @apply_routes([route("websocket.connect", count), route("websocket.receive", count),
                   route("websocket.disconnect", count)])
    def test_persists_per_reply_channel_and_is_deleted_on_disconnect(self):
        client = Client()
        client.send_and_consume("websocket.connect", {"path": "/"})
        client.send_and_consume("websocket.receive", {"path": "/", "text": "x"})
        self.assertEqual([client.receive(), client.receive()], [{"n": 1}, {"n": 2}])
        other = Client()
        other.send_and_consume("websocket.receive", {"path": "/", "text": "x"})
        self.assertEqual(other.receive(), {"n": 1})
        key = session_for_reply_channel(client.reply_channel).session_key
        self.assertTrue(key.startswith("chn") and len(key) == 32)
        self.assertTrue(Session.objects.filter(session_key=key).exists())
        client.send_and_consume("websocket.disconnect", {"path": "/", "code": 1000})
        self.assertEqual(client.receive(), {"n": 3})
        self.assertFalse(Session.objects.filter(session_key=key).exists())

    def test_channel_sessions_expire_for_clearsessions(self):
        @channel_session
        def touch(message):
            message.channel_session["x"] = 1

        with apply_routes([route("work", touch)]):
            Client().send_and_consume("work", {})
        row = Session.objects.get(session_key__startswith="chn")
        from django.utils import timezone
        remaining = (row.expire_date - timezone.now()).total_seconds()
        self.assertTrue(86000 < remaining <= 86400)

    def test_requires_reply_channel_and_message(self):
        with self.assertRaises(ValueError):
            count(object())
        from django_glue.message import Message
        with self.assertRaises(ValueError):
            count(Message({}, "work", channel_layers["default"]))

    @override_settings(CHANNEL_SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies")
    def test_signed_cookie_engine_refused(self):
        with self.assertRaisesRegex(ImproperlyConfigured, "CHANNEL_SESSION_ENGINE.*server-side engine"):
            session_for_reply_channel("x")

    @override_settings(CHANNEL_SESSION_ENGINE="nope.sessions")
    def test_unimportable_engine(self):
        with self.assertRaisesRegex(ImproperlyConfigured, "'nope.sessions' cannot be imported"):
            session_for_reply_channel("x")

    @override_settings(CHANNEL_SESSION_AGE="a day")
    @apply_routes([route("work", count)])
    def test_bad_session_age(self):
        with self.assertRaisesRegex(ImproperlyConfigured, "CHANNEL_SESSION_AGE"):
            Client().send_and_consume("work", {})

    def test_create_race_becomes_consume_later(self):
        from django.contrib.sessions.backends import db
        from django_glue.message import Message

        message = Message({"reply_channel": "race"}, "work", channel_layers["default"])
        session_for_reply_channel("race").save(must_create=True)  # another worker won the race
        real_exists = db.SessionStore.exists
        db.SessionStore.exists = lambda self, key: False  # ...after we checked
        try:
            with self.assertRaises(ConsumeLater):
                count(message)
        finally:
            db.SessionStore.exists = real_exists


class HttpSessionTests(ChannelTestCase):
    @apply_routes([route("websocket.connect", show_http)])
    def test_from_cookie_and_query_string(self):
        client = WSClient()
        client.session["v"] = "from-cookie"
        client.session.save()
        client.send_and_consume("websocket.connect", path="/", check_accept=False)
        self.assertEqual(client.receive(json=False), {"key": client.session.session_key, "value": "from-cookie"})
        anonymous = Client()  # no cookie at all (a WSClient always sends its session's)
        anonymous.send_and_consume("websocket.connect", {"path": "/", "headers": []})
        self.assertEqual(anonymous.receive(), {"key": None, "value": None})
        by_query = WSClient()
        by_query.send_and_consume("websocket.connect", path=f"/?session_key={client.session.session_key}",
                                  check_accept=False)
        self.assertEqual(by_query.receive(json=False)["value"], "from-cookie")

    @apply_routes([route("websocket.connect", both), route("websocket.receive", both)])
    def test_channel_and_http_session_rehydrates_later(self):
        client = WSClient()
        client.session["v"] = 42
        client.session.save()
        client.send_and_consume("websocket.connect", path="/", check_accept=False)
        self.assertEqual(client.receive(json=False), {"http": 42})
        client._cookies.clear()  # frames carry no cookies
        client.send_and_consume("websocket.receive", {"headers": []}, text="hi", path="/")
        self.assertEqual(client.receive(json=False), {"http": 42})


class OrderingTests(ChannelTestCase):
    def setUp(self):
        log.clear()

    @apply_routes([route("websocket.receive", ordered), route("websocket.connect", ordered)])
    def test_parked_message_is_requeued_after_the_missing_one(self):
        client = WSClient()
        base = {"reply_channel": client.reply_channel, "path": "/"}
        layer = channel_layers["default"]
        layer.send("websocket.connect", {**base, "order": 0, "text": "c"})
        client.consume("websocket.connect", check_accept=False)
        layer.send("websocket.receive", {**base, "order": 2, "text": "second"})
        client.consume("websocket.receive")  # parked on the wait channel
        self.assertEqual(log, ["c"])
        parked = self.get_next_message(wait_channel_name(client.reply_channel), require=True)
        self.assertEqual((parked["text"], parked["original_channel"]), ("second", "websocket.receive"))
        layer.send(wait_channel_name(client.reply_channel), parked.content)  # put it back
        layer.send("websocket.receive", {**base, "order": 1, "text": "first"})
        client.consume("websocket.receive")  # runs, then re-sends the parked one
        client.consume("websocket.receive")
        self.assertEqual(log, ["c", "first", "second"])
        self.assertIsNone(client.consume("websocket.receive", fail_on_none=False))

    @apply_routes([route("websocket.receive", ordered), route("websocket.connect", count)])
    def test_undecorated_connect_counts_as_done(self):
        # The docs' example decorates only the receive consumer.
        client = WSClient(ordered=True)
        client.send_and_consume("websocket.connect", path="/", check_accept=False)
        client.send("websocket.receive", text="two", path="/", content={"order": 2})
        client.consume("websocket.receive")  # order 2 waits for order 1
        self.assertEqual(log, [])
        client.send("websocket.receive", text="one", path="/", content={"order": 1})
        client.consume("websocket.receive")
        client.consume("websocket.receive")
        self.assertEqual(log, ["one", "two"])

    def test_order_advances_only_after_the_buffered_sends(self):
        from django_glue.message import Message
        from django_glue.signals import consumer_finished, consumer_started

        @enforce_ordering
        def reply(message):
            message.reply_channel.send({"n": message["order"]})

        layer = channel_layers["default"]
        message = Message({"reply_channel": "ord", "order": 1, "text": "x"}, "websocket.receive", layer)
        consumer_started.send(sender=None, environ={})
        try:
            reply(message)
            self.assertNotIn("__channels_next_order", session_for_reply_channel("ord"))
            self.assertIsNone(self.get_next_message("ord"))
        finally:
            consumer_finished.send(sender=None)
        self.assertEqual(self.get_next_message("ord").content, {"n": 1})
        self.assertEqual(session_for_reply_channel("ord")["__channels_next_order"], 2)

    def test_failing_consumer_advances_but_consume_later_does_not(self):
        from django_glue.message import Message

        @enforce_ordering
        def flaky(message):
            raise ConsumeLater() if message["text"] == "later" else RuntimeError("bug")

        layer = channel_layers["default"]
        with self.assertRaises(ConsumeLater):
            flaky(Message({"reply_channel": "f", "order": 1, "text": "later"}, "websocket.receive", layer))
        self.assertNotIn("__channels_next_order", session_for_reply_channel("f"))
        with self.assertRaises(RuntimeError):
            flaky(Message({"reply_channel": "f", "order": 1, "text": "bug"}, "websocket.receive", layer))
        self.assertEqual(session_for_reply_channel("f")["__channels_next_order"], 2)

    def test_missing_order_and_slight_are_errors(self):
        with self.assertRaisesRegex(ValueError, "slight"):
            enforce_ordering(slight=True)
        with apply_routes([route("work", ordered)]):
            with self.assertRaisesRegex(ValueError, "order"):
                Client().send_and_consume("work", {})
