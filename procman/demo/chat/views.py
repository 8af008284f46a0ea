"""Pages of the chat: the room list, a room with its history, and the layer statistics."""

import os
import re

from django.db.models import Count, Max
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render

from .models import Message

HISTORY = 50
_ROOM = re.compile(r"^[-a-zA-Z0-9_]{1,50}$")


def index(request):
    """Room list; ``?room=name`` jumps to (creates) a room."""
    wanted = request.GET.get("room", "").strip().lower().replace(" ", "-")
    if wanted:
        if _ROOM.match(wanted):
            return redirect("room", room=wanted)
        error = "Room names are letters, digits, - and _ (up to 50)."
    else:
        error = ""
    rooms = (
        Message.objects.values("room").annotate(messages=Count("id"), last=Max("created")).order_by("-last")[:20]
    )
    return render(request, "chat/index.html", {"rooms": rooms, "error": error, "pid": os.getpid()})


def room(request, room):
    if not _ROOM.match(room):
        raise Http404("no such room")
    history = list(Message.objects.filter(room=room).order_by("-created", "-id")[:HISTORY])[::-1]
    return render(request, "chat/room.html", {"room": room, "history": history, "pid": os.getpid()})


def stats(request):
    """The channel layer's statistics (the live panel polls this)."""
    from django_glue.asgi import channel_layers

    layer = channel_layers["default"]
    channels = [
        {"name": name, **values}
        for name, values in layer.channel_list()
        if not name.startswith("ifc.")  # interface processes' own reply channels
    ]
    groups = layer.group_sizes()
    return JsonResponse({
        "global": layer.global_statistics(),
        "channels": sorted(channels, key=lambda c: c["name"]),
        "groups": dict(sorted(groups.items())),
        "worker_pid": os.getpid(),
    })
