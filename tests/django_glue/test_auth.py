"""message.user from the HTTP session / the channel session; transfer_user."""
from django.contrib.auth.models import User

from django_glue.auth import (
    channel_and_http_session_user_from_http,
    channel_session_user,
    channel_session_user_from_http,
    http_session_user,
    transfer_user,
)
from django_glue.routing import route
from django_glue.test import ChannelTestCase, WSClient, apply_routes


@channel_session_user_from_http
def connect(message):
    message.reply_channel.send({"accept": True})


@channel_session_user
def receive(message):
    message.reply_channel.send({"text": message.user.username or "<anonymous>"})


@http_session_user
def http_user(message):
    message.reply_channel.send({"text": message.user.username or "<anonymous>"})


@channel_and_http_session_user_from_http
def connect_both(message):
    message.reply_channel.send({"accept": True})


class AuthTests(ChannelTestCase):
    def setUp(self):
        self.user = User.objects.create_user("ann", password="pw")

    @apply_routes([route("websocket.connect", connect), route("websocket.receive", receive)])
    def test_user_transferred_from_http_to_channel_session(self):
        client = WSClient()
        self.assertTrue(client.login(username="ann", password="pw"))
        client.send_and_consume("websocket.connect", path="/")
        client._cookies.clear()  # later frames carry no cookies
        client.send_and_consume("websocket.receive", {"headers": []}, text="hi", path="/")
        self.assertEqual(client.receive(json=False), "ann")

    @apply_routes([route("websocket.connect", connect), route("websocket.receive", receive)])
    def test_anonymous_without_login(self):
        client = WSClient()
        client.send_and_consume("websocket.connect", path="/")
        client.send_and_consume("websocket.receive", text="hi", path="/")
        self.assertEqual(client.receive(json=False), "<anonymous>")

    @apply_routes([route("websocket.connect", http_user)])
    def test_http_session_user_and_force_login(self):
        client = WSClient()
        client.force_login(self.user)
        client.send_and_consume("websocket.connect", path="/", check_accept=False)
        self.assertEqual(client.receive(json=False), "ann")
        self.assertFalse(WSClient().login(username="ann", password="wrong"))

    @apply_routes([route("websocket.connect", connect_both), route("websocket.receive", receive)])
    def test_channel_and_http_session_user_from_http(self):
        client = WSClient()
        client.force_login(self.user)
        client.send_and_consume("websocket.connect", path="/")
        client.send_and_consume("websocket.receive", {"headers": []}, text="x", path="/")
        self.assertEqual(client.receive(json=False), "ann")

    def test_transfer_user_copies_only_complete_logins(self):
        complete = {"_auth_user_id": "1", "_auth_user_backend": "b", "_auth_user_hash": "h", "other": 1}
        target = {}
        transfer_user(complete, target)
        self.assertEqual(target, {"_auth_user_id": "1", "_auth_user_backend": "b", "_auth_user_hash": "h"})
        partial = {}
        transfer_user({"_auth_user_id": "1"}, partial)
        self.assertEqual(partial, {})
