from django_glue.routing import route


def echo(message):
    message.reply_channel.send({"text": message.content.get("text", "")})


channel_routing = [route("websocket.receive", echo)]
