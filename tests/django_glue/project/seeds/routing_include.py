# Channels 1 docs, "Routing": include() with path prefixes and named groups as kwargs.
from django_glue import Group
from django_glue.routing import route, include


def poll_consumer(message):
    # Answers the HTTP long-poll endpoint directly with a Response message.
    message.reply_channel.send({
        "status": 200,
        "headers": [[b"content-type", b"text/plain"]],
        "content": b"polled",
    })


def chat_connect(message, room_name):
    message.reply_channel.send({"accept": True})
    Group("room-%s" % room_name).add(message.reply_channel)
    message.reply_channel.send({"text": "joined %s" % room_name})


def chat_disconnect(message):
    pass


http_routing = [
    route("http.request", poll_consumer, path=r"^/poll/$", method=r"^POST$"),
]

chat_routing = [
    route("websocket.connect", chat_connect, path=r"^/(?P<room_name>[a-zA-Z0-9_]+)/$"),
    route("websocket.disconnect", chat_disconnect),
]

routing = [
    # You can use a string import path as the first argument as well.
    include(chat_routing, path=r"^/chat"),
    include(http_routing),
]
channel_routing = routing
