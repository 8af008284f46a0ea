"""Channel routing of the demo: the chat's WebSocket consumers (HTTP goes to the Django views)."""

from django_glue.routing import route

from procman.demo.chat import consumers

ROOM_PATH = r"^/chat/(?P<room>[-a-zA-Z0-9_]{1,50})/$"

channel_routing = [
    route("websocket.connect", consumers.ws_connect, path=ROOM_PATH),
    route("websocket.receive", consumers.ws_receive, path=ROOM_PATH),
    route("websocket.disconnect", consumers.ws_disconnect, path=ROOM_PATH),
]
