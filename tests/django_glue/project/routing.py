"""Routing used by the in-process tests (tests patch it per test with apply_routes)."""
from django_glue.routing import route


def background_task(message):
    """A non-HTTP channel consumer: answers on the reply channel."""
    message.reply_channel.send({"done": message["n"] * 2})


channel_routing = [route("background", background_task)]
other_routing = {"other.work": background_task}
