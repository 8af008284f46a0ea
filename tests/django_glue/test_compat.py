"""Channels 1.1.8 behaviour that Channels 1 projects and their tests rely on (issue 10, part 2).

Each test is one item of the list: a Channels 1 project, its imports changed from ``channels`` to
``django_glue``, must observe what it observed on Channels 1.1.8.
"""
import importlib
import os

import pytest
from django.contrib.auth.models import User
from django.http import FileResponse, HttpResponse, StreamingHttpResponse

from django_glue.asgi import channel_layers
from django_glue.auth import channel_and_http_session_user_from_http, channel_session_user_from_http
from django_glue.exceptions import DenyConnection
from django_glue.generic.websockets import WebsocketConsumer
from django_glue.handler import AsgiHandler
from django_glue.message import Message
from django_glue.routing import route
from django_glue.security.websockets import allowed_hosts_only
from django_glue.sessions import enforce_ordering, http_session, wait_channel_name
from django_glue.test import ChannelTestCase, Client, WSClient, apply_routes


def report_user(message):
    http = message.http_session
    message.reply_channel.send({
        "channel": message.channel.name,
        "user": message.user.username if message.user.is_authenticated else None,
        "http_key": http.session_key if http is not None else None,
    })


@channel_session_user_from_http
def from_http(message):
    report_user(message)


@channel_and_http_session_user_from_http
def and_http(message):
    report_user(message)


class HttpUser(WebsocketConsumer):
    http_user = True

    def connect(self, message, **kwargs):
        report_user(message)

    def receive(self, text=None, bytes=None, **kwargs):
        report_user(self.message)

    def disconnect(self, message, **kwargs):
        report_user(message)


class UserOnEveryHandlerTests(ChannelTestCase):
    """``http_session`` and ``user`` on receive and disconnect too, through the channel session."""

    def check(self):
        user = User.objects.create_user("ada", password="pw")
        client = WSClient()
        client.force_login(user)
        http_key = client.session.session_key
        seen = []
        for channel in ("websocket.connect", "websocket.receive", "websocket.disconnect"):
            # Frames and disconnects carry no cookie from a real interface server.
            content = {} if channel == "websocket.connect" else {"headers": [], "text": "x"}
            client.send_and_consume(channel, content, path="/", check_accept=False)
            seen.append(client.receive(json=False))
        self.assertEqual(seen, [
            {"channel": name, "user": "ada", "http_key": http_key}
            for name in ("websocket.connect", "websocket.receive", "websocket.disconnect")
        ])

    @apply_routes([route(["websocket.connect", "websocket.receive", "websocket.disconnect"], from_http)])
    def test_channel_session_user_from_http(self):
        self.check()

    @apply_routes([route(["websocket.connect", "websocket.receive", "websocket.disconnect"], and_http)])
    def test_channel_and_http_session_user_from_http(self):
        self.check()

    @apply_routes([HttpUser.as_route()])
    def test_generic_http_user(self):
        self.check()


def test_message_accepts_none_channel_and_layer():
    message = Message({"text": "hi", "reply_channel": "r!1"}, None, None)
    assert message.channel.name is None
    assert message["text"] == "hi" and message.reply_channel.name == "r!1"
    with pytest.raises(ValueError, match="unnamed channel"):
        message.channel.send({"x": 1})
    assert message.copy().channel.name is None


def test_routing_a_message_built_with_a_stand_in_layer():
    """Channels 1's routing tests build messages with a string for the layer."""
    from django_glue.routing import Router, include

    router = Router([include([route("websocket.connect", room_consumer, path=r"^/(?P<room>\w+)/$")], path=r"^/chat")])
    message = Message({"path": "/chat/lobby/"}, "websocket.connect", channel_layer="fake channel layer")
    assert router.match(message) == (room_consumer, {"room": "lobby"})


class MessageNoneLayerTests(ChannelTestCase):
    def test_layer_is_the_default_alias(self):
        message = Message({"reply_channel": "r.none"}, "work", None)
        self.assertIs(message.channel_layer, channel_layers["default"])
        message.reply_channel.send({"ok": True})
        self.assertEqual(self.get_next_message("r.none").content, {"ok": True})


@http_session
def show_key(message):
    session = message.http_session
    message.reply_channel.send({"key": session.session_key if session else None})


@allowed_hosts_only
def guarded(message):
    message.reply_channel.send({"accept": True})


class HeaderFormsTests(ChannelTestCase):
    """Headers as a list of pairs or a dict, bytes or text; a malformed entry is a rejection."""

    def consume(self, consumer, headers):
        client = Client()
        message = Message({"reply_channel": client.reply_channel, "path": "/", "headers": headers},
                          "websocket.connect", channel_layers["default"])
        try:
            consumer(message)
        except DenyConnection:
            return "denied"
        return client.receive()

    def test_http_session_from_a_dict_of_headers(self):
        for headers in ({b"cookie": b"sessionid=abcdefgh12345678"}, {"cookie": "sessionid=abcdefgh12345678"},
                        [["cookie", "sessionid=abcdefgh12345678"]], [[b"cookie", b"sessionid=abcdefgh12345678"]]):
            with self.subTest(headers=headers):
                self.assertEqual(self.consume(show_key, headers), {"key": "abcdefgh12345678"})

    def test_origin_from_a_dict_of_headers(self):
        self.assertEqual(self.consume(guarded, {b"origin": b"http://localhost"}), {"accept": True})
        self.assertEqual(self.consume(guarded, {"origin": "http://evil.example"}), "denied")

    def test_get_header_for_validator_subclasses(self):
        message = Message({"headers": {b"origin": b"http://a.example"}}, "websocket.connect", None)
        self.assertEqual(allowed_hosts_only.get_header(message, b"origin"), ["http://a.example"])
        with self.assertRaises(KeyError):
            allowed_hosts_only.get_header(message, "x-missing")

    def test_empty_header_entry_is_deny_connection(self):
        for headers in ([[]], [[b"origin"]], [[b"origin", b"http://localhost"], []]):
            with self.subTest(headers=headers):
                self.assertEqual(self.consume(guarded, headers), "denied")
                self.assertEqual(self.consume(show_key, headers), "denied")


@enforce_ordering
def ordered_echo(message):
    message.reply_channel.send({"text": message["text"]})


class WSClientTests(ChannelTestCase):
    def test_headers_as_a_dict_and_cookies(self):
        client = WSClient()
        client.set_header("x-h", "v")
        client.set_cookie("a", "1")
        self.assertEqual(client.get_cookies(), {"a": "1", "sessionid": client.session.session_key})
        self.assertEqual(client.headers["x-h"], "v")
        self.assertIn(b"a=1", client.headers["cookie"])
        with self.assertRaisesRegex(ValueError, "set_cookie"):
            client.set_header("cookie", "x=1")

    @apply_routes([route(["websocket.connect", "websocket.receive"], show_key)])
    def test_session_cookie_sent_with_every_message(self):
        client = WSClient()
        for channel in ("websocket.connect", "websocket.receive", "websocket.receive"):
            client.send_and_consume(channel, check_accept=False)
            self.assertEqual(client.receive(json=False), {"key": client.session.session_key})

    def test_cookie_header_round_trips_through_django(self):
        from django.http import parse_cookie

        client = WSClient()
        client.set_cookie("foo", "not-bar")
        client.set_cookie("foo", "bar")
        client.set_cookie("qux", "qu;x")
        parsed = parse_cookie(client.headers["cookie"].decode("ascii"))
        self.assertEqual(parsed, client.get_cookies())
        self.assertEqual(parsed, {"foo": "bar", "qux": "qu;x", "sessionid": client.session.session_key})

    def test_get_content_as_channels1_tests_call_it(self):
        client = WSClient(ordered=True)
        content = client._get_content(text={"key": "value"}, path="/my/path?a=1")
        self.assertEqual((content["text"], content["path"], content["order"]), ('{"key": "value"}', "/my/path", 0))
        self.assertEqual(content["reply_channel"], client.reply_channel)
        cookie = [value for name, value in content["headers"] if name == b"cookie"][0]
        self.assertIn(b"sessionid", cookie)
        client.order = 2
        self.assertEqual(client._get_content()["order"], 2)

    @apply_routes([route("websocket.receive", ordered_echo)])
    def test_ordered_frames_without_a_connect(self):
        client = WSClient(ordered=True)
        for text in ("1", "2", "3"):
            client.send_and_consume("websocket.receive", text=text)
        self.assertEqual([client.receive(), client.receive(), client.receive()], [1, 2, 3])

    def test_order_counter_is_public_and_honoured(self):
        client = WSClient(ordered=True)
        client.order = 5
        client.send("websocket.receive", text="a")
        client.send("websocket.receive", {"order": 9}, text="b")
        client.send("websocket.receive", text="c")
        orders = [self.get_next_message("websocket.receive").content["order"] for _ in range(3)]
        self.assertEqual(orders, [5, 9, 10])


@pytest.mark.parametrize("module, names", [
    ("django_glue.utils", ["name_that_thing"]),
    ("django_glue.log", ["setup_logger"]),
    ("django_glue.sessions", ["requeue_messages", "session_for_reply_channel", "enforce_ordering"]),
    ("django_glue.test", ["ChannelTestCaseMixin", "HttpClient", "WSClient", "ChannelLiveServerTestCase"]),
    ("django_glue.test.http", ["HttpClient"]),
    ("django_glue.test.liveserver", ["ChannelLiveServerTestCase"]),
    ("django_glue.handler", ["ViewConsumer", "AsgiHandler", "AsgiRequest"]),
    ("django_glue.routing", ["null_consumer", "connect_consumer", "Route", "Include", "Router"]),
    ("django_glue.routing.Router", ["normalise_re_arg", "resolve_routing", "check_default"]),
    ("django_glue.apps", ["ChannelsConfig"]),
    ("django_glue.worker", ["Worker", "WorkerGroup"]),
])
def test_channels1_public_names_import(module, names):
    if module.endswith(".Router"):
        imported = importlib.import_module(module.rsplit(".", 1)[0]).Router
    else:
        imported = importlib.import_module(module)
    for name in names:
        assert hasattr(imported, name), f"{module}.{name}"


def test_deprecated_tests_package_warns_and_reexports():
    import sys

    sys.modules.pop("django_glue.tests", None)
    with pytest.warns(DeprecationWarning, match="use django_glue.test"):
        old = importlib.import_module("django_glue.tests")
    from django_glue.test import WSClient as current

    assert old.WSClient is current and "ChannelTestCase" in old.__all__


def test_old_names_behave_as_in_channels1():
    from django_glue.apps import ChannelsConfig, DjangoGlueConfig
    from django_glue.request import AsgiRequest
    from django_glue.exceptions import ResponseLater
    from django_glue.routing import connect_consumer, null_consumer
    from django_glue.test.base import ChannelTestCaseMixin, ChannelTestMixin
    from django_glue.utils import name_that_thing
    from django_glue.worker import Worker

    assert AsgiRequest.ResponseLater is ResponseLater
    assert issubclass(ChannelsConfig, DjangoGlueConfig) and ChannelTestCaseMixin is ChannelTestMixin
    assert null_consumer(object(), room="x") is None
    assert name_that_thing(route) == "django_glue.routing.route"
    assert name_that_thing(AsgiHandler.chunk_bytes) == "django_glue.handler.AsgiHandler.chunk_bytes"
    assert name_that_thing(AsgiHandler()) == "django_glue.handler.AsgiHandler"
    worker = Worker(None, only_channels=["http.*", "websocket.*"], exclude_channels=["*.disconnect"])
    assert worker.apply_channel_filters(["http.request", "http.disconnect", "websocket.connect", "x"]) == [
        "http.request", "websocket.connect"]
    assert list(AsgiHandler.chunk_bytes(b"")) == [(b"", True)]

    class Small(AsgiHandler):
        chunk_size = 2

    assert list(Small.chunk_bytes(b"abcde")) == [(b"ab", False), (b"cd", False), (b"e", True)]
    assert callable(connect_consumer)


class ChannelsConfigTests(ChannelTestCase):
    def test_connect_consumer_accepts(self):
        from django_glue.routing import connect_consumer

        with apply_routes([route("websocket.connect", connect_consumer)]):
            WSClient().send_and_consume("websocket.connect")  # asserts {"accept": True}


class ResponseFramingTests(ChannelTestCase):
    """``AsgiHandler.encode_response`` yields the messages Channels 1 yielded, one by one."""

    def test_plain_response(self):
        response = HttpResponse(b"hello")
        response.set_cookie("c", "1")
        (message,) = AsgiHandler.encode_response(response)
        self.assertEqual((message["status"], message["content"], message["more_content"]), (200, b"hello", False))
        self.assertTrue(all(isinstance(h, tuple) for h in message["headers"]))
        self.assertIn(b"Set-Cookie", [name for name, _ in message["headers"]])

    def test_streaming_response_has_no_headers_only_message(self):
        messages = list(AsgiHandler.encode_response(StreamingHttpResponse([b"ab", b"cd"])))
        self.assertEqual([sorted(m) for m in messages],
                         [["content", "headers", "more_content", "status"], ["content", "more_content"], ["more_content"]])
        self.assertEqual([m.get("content") for m in messages], [b"ab", b"cd", None])
        self.assertEqual([m["more_content"] for m in messages], [True, True, False])

    def test_empty_streaming_response(self):
        (message,) = AsgiHandler.encode_response(StreamingHttpResponse([]))
        self.assertEqual((message["status"], message["more_content"]), (200, False))

    def test_file_response_and_chunk_size_below_1024(self):
        class Small(AsgiHandler):
            chunk_size = 100

        path = os.path.join(os.path.dirname(__file__), "project", "static", "css", "site.css")
        size = os.path.getsize(path)
        messages = list(Small.encode_response(FileResponse(open(path, "rb"))))
        self.assertIn("status", messages[0])
        self.assertEqual(len(messages[0]["content"]), min(100, size))
        self.assertTrue(all(len(m.get("content", b"")) <= 100 for m in messages))
        self.assertEqual(len(messages), -(-size // 100) + 1)  # the pieces, then the closing message

    def test_chunk_size_honoured_by_the_handler_below_1024(self):
        class Small(AsgiHandler):
            chunk_size = 100

        self.assertEqual(Small().chunk_size_for(channel_layers["default"]), 100)

    def test_handle_uncaught_exception(self):
        from django.test import RequestFactory, override_settings

        request = RequestFactory().get("/x/")
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            import sys

            info = sys.exc_info()
        with override_settings(DEBUG=False):
            response = AsgiHandler().handle_uncaught_exception(request, None, info)
        self.assertEqual((response.status_code, response.content), (500, b"500 Internal Server Error"))
        with override_settings(DEBUG=True):
            response = AsgiHandler().handle_uncaught_exception(request, None, info)
        self.assertIn(b"RuntimeError: boom", response.content)


def room_consumer(message, room):
    message.reply_channel.send({"room": room})


class BytesRouteTests(ChannelTestCase):
    @apply_routes([route("websocket.connect", room_consumer, path=rb"^/chat/(?P<room>\w+)/$")])
    def test_bytes_pattern_matches(self):
        client = Client()
        client.send_and_consume("websocket.connect", {"path": "/chat/lobby/"})
        self.assertEqual(client.receive(), {"room": "lobby"})
        client.send_and_consume("websocket.connect", {"path": b"/chat/bytes/"})
        self.assertEqual(client.receive(), {"room": "bytes"})


@enforce_ordering
def ordered(message):
    message.reply_channel.send({"ran": message["order"]})


class StaleOrderTests(ChannelTestCase):
    @apply_routes([route(["websocket.connect", "websocket.receive"], ordered)])
    def test_duplicate_frame_is_dropped_once(self):
        client = Client()
        for order, channel in ((0, "websocket.connect"), (1, "websocket.receive"), (1, "websocket.receive")):
            client.send_and_consume(channel, {"path": "/", "order": order, "text": "x"})
        self.assertEqual([client.receive(), client.receive(), client.receive()],
                         [{"ran": 0}, {"ran": 1}, None])
        # Nothing re-queued and nothing parked: the duplicate is gone, not looping.
        self.assertIsNone(self.get_next_message("websocket.receive"))
        self.assertIsNone(self.get_next_message(wait_channel_name(client.reply_channel)))


def test_make_test_backend_uses_its_own_prefix_and_cleans_up():
    import gc

    wrapper = channel_layers.make_test_backend("default")
    prefix = wrapper.channel_layer.prefix
    from django.conf import settings

    assert prefix not in (settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"], "asgi")
    assert any(prefix in name for name in os.listdir("/dev/shm"))
    second = channel_layers.make_test_backend("default")
    assert second.channel_layer.prefix != prefix
    second.channel_layer.close()
    del wrapper
    gc.collect()
    assert not any(prefix in name for name in os.listdir("/dev/shm"))


def broken_connect(message):
    raise RuntimeError("broken connect")


class FailingConnectTests(ChannelTestCase):
    """A connect consumer that raises rejects the handshake at once (issue 11)."""

    @apply_routes([route("websocket.connect", broken_connect)])
    def test_worker_logs_and_rejects(self):
        from django_glue.worker import Worker

        with self.assertLogs("django_glue.worker", "ERROR") as logs:
            Worker(channel_layers["default"]).handle("websocket.connect", {"reply_channel": "r!1", "path": "/"})
        self.assertEqual(self.get_next_message("r!", require=True).content, {"close": True})
        self.assertIn("RuntimeError: broken connect", "\n".join(logs.output))
