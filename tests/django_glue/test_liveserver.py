"""``ChannelLiveServerTestCase`` with real clients: HTTP, WebSocket, the test database, Chromium."""
import json
import os
import shutil
import subprocess
import tempfile

import pytest
from django.contrib.auth.models import User

from django_glue.asgi import channel_layers
from django_glue.routing import route
from django_glue.test import ChannelLiveServerTestCase, apply_routes

from websockets.sync.client import connect

from .e2e import http_request, recv


def count_users(message):
    message.reply_channel.send({"accept": True, "text": json.dumps({"users": User.objects.count()})})


def join_live_group(message):
    from django_glue import Group

    Group("live").add(message.reply_channel)
    message.reply_channel.send({"accept": True, "text": "joined"})


def echo(message):
    message.reply_channel.send({"text": message["text"].upper()})


class LiveServerTests(ChannelLiveServerTestCase):
    def port(self):
        return int(self.live_server_url.rsplit(":", 1)[1])

    def test_http_and_static_files(self):
        self.assertTrue(self.live_server_url.startswith("http://127.0.0.1:"))
        status, _, body = http_request(self.port(), "GET", "/hello/")
        self.assertEqual((status, body), (200, b"hello"))
        status, _, body = http_request(self.port(), "GET", "/static/css/site.css")
        self.assertEqual(status, 200)
        self.assertIn('"GET /hello/" 200', self.interface_log())

    @apply_routes([route("websocket.connect", count_users), route("websocket.receive", echo)])
    def test_websocket_sees_the_test_database(self):
        User.objects.create_user("live", password="x")
        with connect(self.live_server_ws_url + "/count/", open_timeout=15, close_timeout=5) as ws:
            self.assertEqual(json.loads(recv(ws)), {"users": 1})
            ws.send("shout")
            self.assertEqual(recv(ws), "SHOUT")

    @apply_routes([route("websocket.connect", join_live_group)])
    def test_group_send_from_the_test_reaches_the_browser(self):
        # channel_layers[alias] is the live site's layer, so the test can talk to its sockets.
        from django_glue import Group

        with connect(self.live_server_ws_url + "/g/", open_timeout=15, close_timeout=5) as ws:
            self.assertEqual(recv(ws), "joined")
            Group("live").send({"text": "from the test"})
            self.assertEqual(recv(ws), "from the test")

    @pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed (apt-get install chromium)")
    def test_chromium_loads_a_page(self):
        with tempfile.TemporaryDirectory() as profile:
            result = subprocess.run(
                ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", "--dump-dom", self.live_server_url + "/hello/"],
                capture_output=True, text=True, timeout=90,
            )
        self.assertIn("hello", result.stdout, result.stderr[-2000:])


def test_live_server_leaves_nothing_behind():
    import unittest

    prefixes = []

    class Probe(ChannelLiveServerTestCase):
        def test_it(self):
            prefixes.append(channel_layers["default"].channel_layer.prefix)
            self.assertEqual(http_request(int(self.live_server_url.rsplit(":", 1)[1]), "GET", "/hello/")[0], 200)

    before = channel_layers._backends.get("default")
    result = unittest.TestResult()
    unittest.defaultTestLoader.loadTestsFromTestCase(Probe).run(result)
    assert result.wasSuccessful(), result.failures + result.errors
    assert prefixes and not any(prefixes[0] in name for name in os.listdir("/dev/shm"))
    assert channel_layers._backends.get("default") is before
