from django_glue.routing import route


def connect(message):
    message.reply_channel.send({"accept": True})


def echo(message):
    message.reply_channel.send({"text": "echo: " + message.content.get("text", "")})


channel_routing = [route("websocket.connect", connect), route("websocket.receive", echo)]
