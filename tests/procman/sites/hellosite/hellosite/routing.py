from django_glue.routing import route


def echo(message):
    message.reply_channel.send({"text": message.content.get("text", "")})


def thumbnail(message):
    print("thumbnail", message.content.get("n"), flush=True)


channel_routing = [route("websocket.receive", echo), route("thumbnail", thumbnail)]
