"""Channels 4 application for Daphne: HTTP through Django's ASGI handler, WebSockets to
``BroadcastConsumer`` (CMPSITE_STACK=channels)."""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cmpsite.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from .consumers import BroadcastConsumer  # noqa: E402

application = ProtocolTypeRouter({
    "http": django_app,
    "websocket": URLRouter([path("ws/", BroadcastConsumer.as_asgi()),
                            path("ws/send/", BroadcastConsumer.as_asgi())]),
})
