"""WebSocket consumers of the chat: join the room's Group, store and broadcast messages.

A socket's room comes from its path (``/chat/<room>/``) and is kept in its channel session, as
in the Channels 1 tutorial. Frames are JSON ``{"handle": ..., "text": ...}``; anything else is
answered with an error frame to that socket only.
"""

import json

from django_glue.channel import Group
from django_glue.sessions import channel_session

from .models import MAX_HANDLE, MAX_TEXT, Message


def room_group(room: str) -> Group:
    return Group(f"chat-{room}")


@channel_session
def ws_connect(message, room):
    message.channel_session["room"] = room
    room_group(room).add(message.reply_channel)
    message.reply_channel.send({"accept": True})


@channel_session
def ws_receive(message, room):
    room = message.channel_session.get("room", room)
    try:
        data = json.loads(message.content.get("text") or "")
        text = str(data["text"]).strip()[:MAX_TEXT]
        handle = (str(data.get("handle") or "anonymous").strip() or "anonymous")[:MAX_HANDLE]
    except (ValueError, KeyError, TypeError):
        message.reply_channel.send({"text": json.dumps({"error": 'send JSON {"handle": ..., "text": ...}'})})
        return
    if not text:
        return
    stored = Message.objects.create(room=room, handle=handle, text=text)
    room_group(room).send({"text": json.dumps(stored.as_dict())})


@channel_session
def ws_disconnect(message, room):
    room_group(message.channel_session.get("room", room)).discard(message.reply_channel)
