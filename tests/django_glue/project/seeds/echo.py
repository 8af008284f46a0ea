# Channels 1 docs, "Getting Started": the echo consumer.
from django_glue.routing import route


def ws_message(message):
    # ASGI WebSocket packet-received and send-packet message types
    # both have a "text" key for their textual data.
    message.reply_channel.send({
        "text": message.content['text'],
    })


channel_routing = [
    route("websocket.receive", ws_message),
]
