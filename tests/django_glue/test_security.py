"""allowed_hosts_only and BaseOriginValidator."""
from django.test import override_settings

from django_glue.generic.websockets import WebsocketConsumer
from django_glue.routing import route
from django_glue.security.websockets import BaseOriginValidator, allowed_hosts_only
from django_glue.test import ChannelTestCase, WSClient, apply_routes


@allowed_hosts_only
def connect(message):
    message.reply_channel.send({"accept": True})


class OnlyExampleOrg(BaseOriginValidator):
    def validate_origin(self, message, origin):
        return origin == "https://example.org"


@OnlyExampleOrg
def custom(message):
    message.reply_channel.send({"accept": True})


class GuardedConsumer(WebsocketConsumer):
    @allowed_hosts_only
    def connect(self, message, **kwargs):
        message.reply_channel.send({"accept": True})


class OriginTests(ChannelTestCase):
    def attempt(self, origin=None):
        client = WSClient()
        if origin is not None:
            client.set_header("origin", origin)
        client.send_and_consume("websocket.connect", path="/", check_accept=False)
        return client.receive(json=False)

    @apply_routes([route("websocket.connect", connect)])
    def test_allowed_hosts(self):
        self.assertEqual(self.attempt("http://localhost:8000"), {"accept": True})
        self.assertEqual(self.attempt("https://testserver"), {"accept": True})
        self.assertEqual(self.attempt("http://evil.example.com"), {"close": True})
        self.assertEqual(self.attempt(), {"close": True})  # no Origin header
        self.assertEqual(self.attempt("null"), {"close": True})

    @override_settings(DEBUG=True, ALLOWED_HOSTS=[])
    @apply_routes([route("websocket.connect", connect)])
    def test_debug_with_empty_allowed_hosts_allows_local(self):
        self.assertEqual(self.attempt("http://127.0.0.1:8000"), {"accept": True})
        self.assertEqual(self.attempt("http://[::1]:8000"), {"accept": True})
        self.assertEqual(self.attempt("http://example.com"), {"close": True})

    @override_settings(ALLOWED_HOSTS=[".example.com"])
    @apply_routes([route("websocket.connect", connect)])
    def test_subdomain_pattern(self):
        self.assertEqual(self.attempt("https://www.example.com"), {"accept": True})

    @apply_routes([route("websocket.connect", custom)])
    def test_custom_validator(self):
        self.assertEqual(self.attempt("https://example.org"), {"accept": True})
        self.assertEqual(self.attempt("https://localhost"), {"close": True})

    @apply_routes([GuardedConsumer.as_route()])
    def test_decorating_a_consumer_method(self):
        self.assertEqual(self.attempt("http://localhost"), {"accept": True})
        self.assertEqual(self.attempt("http://elsewhere.org"), {"close": True})

    def test_base_validator_must_be_subclassed(self):
        with self.assertRaises(NotImplementedError):
            BaseOriginValidator(lambda m: None).validate_origin(None, "x")
