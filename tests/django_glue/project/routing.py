"""Routing used by the in-process tests (tests patch it per test with apply_routes)."""
import time

from django_glue.routing import route


def background_task(message):
    """A non-HTTP channel consumer: answers on the reply channel."""
    message.reply_channel.send({"done": message["n"] * 2})


channel_routing = [route("background", background_task)]
other_routing = {"other.work": background_task}


def failing(message):
    raise RuntimeError(f"deliberate failure {message['tag']}")


def blocking_job(message):
    """Tell the test it started, then wait (bounded) for a release message and answer."""
    message.reply_channel.send({"started": message["job"]}, immediately=True)
    layer = message.channel_layer
    release = f"release.{message['job']}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        channel, _ = layer.receive([release], block=True)
        if channel is not None:
            break
    message.reply_channel.send({"done": message["job"]})


# Served by the runworker process tests.
process_routing = [
    route("background", background_task),
    route("fail", failing),
    route("job", blocking_job),
]


# Served by the WebSocket end-to-end tests.
def _websocket_routing():
    from django_glue.generic.websockets import JsonWebsocketConsumer, WebsocketDemultiplexer
    from django_glue.security.websockets import allowed_hosts_only

    @allowed_hosts_only
    def guarded_connect(message):
        message.reply_channel.send({"accept": True})

    def binary_echo(message):
        message.reply_channel.send({"bytes": message["bytes"][::-1]})

    class Upper(JsonWebsocketConsumer):
        def receive(self, content, **kwargs):
            self.send({"upper": content["text"].upper()})

    class Streams(WebsocketDemultiplexer):
        consumers = {"upper": Upper}

    def broken_connect(message):
        raise RuntimeError("deliberately broken connect consumer")

    return [
        route("websocket.connect", broken_connect, path=r"^/broken/$"),
        route("websocket.connect", guarded_connect, path=r"^/guarded/$"),
        route("websocket.receive", binary_echo, path=r"^/guarded/$"),
        Streams.as_route(path=r"^/streams/$"),
    ]


websocket_routing = _websocket_routing()
