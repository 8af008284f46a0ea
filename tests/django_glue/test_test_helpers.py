"""The test helpers themselves: isolation per test, clean-up, apply_routes on every alias."""
import os

import pytest

from django_glue.asgi import channel_layers
from django_glue.routing import route
from django_glue.test import (
    ChannelTestCase,
    Client,
    HttpClient,
    TransactionChannelTestCase,
    WSClient,
    apply_routes,
)

segments: list = []


def answer(message):
    message.reply_channel.send({"answer": 42})


class IsolationTests(ChannelTestCase):
    test_channel_aliases = ["default", "other"]

    def test_each_alias_isolated(self):
        self.assertNotEqual(channel_layers["default"].channel_layer.prefix,
                            channel_layers["other"].channel_layer.prefix)

    def test_require_fails_the_test(self):
        with self.assertRaisesRegex(AssertionError, "expected a message"):
            self.get_next_message("nothing", require=True)

    @apply_routes([route("q", answer)], aliases=["other"])
    def test_apply_routes_patches_the_named_alias(self):
        self.assertEqual(channel_layers["other"].router.channels, {"q"})
        self.assertEqual(channel_layers["default"].router.channels, {"background"})
        client = Client(alias="other")
        client.send_and_consume("q")
        self.assertEqual(client.receive(), {"answer": 42})

    def test_apply_routes_restores(self):
        with apply_routes(route("q", answer)):
            self.assertEqual(channel_layers["default"].router.channels, {"q"})
        self.assertEqual(channel_layers["default"].router.channels, {"background"})

    def test_client_helpers(self):
        client = WSClient()
        self.assertIsNone(client.consume("empty", fail_on_none=False))
        with self.assertRaisesRegex(AssertionError, "no message waiting"):
            client.consume("empty")
        client.send("unrouted", {})
        with self.assertRaisesRegex(AssertionError, "no route"):
            client.consume("unrouted")
        self.assertEqual(client.get_consumer_by_channel("background").__name__, "background_task")
        self.assertIsNone(client.get_consumer_by_channel("nothing"))

    def test_wsclient_message_shape(self):
        client = WSClient(ordered=True)
        client.set_cookie("a", "1")
        client.set_header("x-h", "v")
        client.send("websocket.connect", path="/p?q=1")
        client.send("websocket.receive", text={"j": 1}, path="/p")
        connect = self.get_next_message("websocket.connect").content
        receive = self.get_next_message("websocket.receive").content
        self.assertEqual((connect["path"], connect["query_string"], connect["order"]), ("/p", b"q=1", 0))
        cookie = dict(connect["headers"])[b"cookie"]
        self.assertIn(b"a=1", cookie)
        self.assertIn(f"sessionid={client.session.session_key}".encode(), cookie)
        self.assertIn([b"x-h", b"v"], connect["headers"])
        self.assertEqual((receive["text"], receive["order"]), ('{"j": 1}', 1))

    def test_http_client_is_deprecated_alias(self):
        with pytest.warns(DeprecationWarning):
            self.assertIsInstance(HttpClient(), WSClient)


class _Inner(ChannelTestCase):
    """Run by the test below through unittest, not collected by pytest itself."""

    __test__ = False

    def test_a_leaves_a_message_behind(self):
        channel_layers["default"].send("leftover", {"x": 1})
        segments.append(channel_layers["default"].channel_layer.prefix)

    def test_b_never_sees_it(self):
        assert self.get_next_message("leftover") is None
        segments.append(channel_layers["default"].channel_layer.prefix)


def test_each_test_gets_a_fresh_layer_that_is_removed_afterwards():
    import unittest

    segments.clear()
    before = channel_layers["default"] if "default" in channel_layers._backends else None
    result = unittest.TestResult()
    unittest.defaultTestLoader.loadTestsFromTestCase(_Inner).run(result)
    assert result.wasSuccessful(), result.failures + result.errors
    assert len(set(segments)) == 2
    for prefix in segments:
        assert not any(prefix in name for name in os.listdir("/dev/shm"))
    assert (channel_layers["default"] if "default" in channel_layers._backends else None) is before


class TransactionIsolationTests(TransactionChannelTestCase):
    def test_first_gets_a_layer(self):
        channel_layers["default"].send("leftover", {"x": 1})
        self.assertEqual(self.get_next_message("leftover").content, {"x": 1})
        channel_layers["default"].send("leftover", {"x": 2})

    def test_second_gets_a_fresh_layer(self):
        self.assertIsNone(self.get_next_message("leftover"))
