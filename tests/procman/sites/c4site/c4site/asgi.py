"""The Channels 4 application, as the official tutorial writes it."""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "c4site.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ChannelNameRouter, ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from .consumers import RoomConsumer, TaskConsumer  # noqa: E402

application = ProtocolTypeRouter({
    "http": django_asgi_app,
    "websocket": URLRouter([path("ws/<str:room>/", RoomConsumer.as_asgi())]),
    "channel": ChannelNameRouter({"tasks": TaskConsumer.as_asgi()}),
})
