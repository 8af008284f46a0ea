"""HTTP side: who answered (pid), a slow answer (reload/drain tests), and a task for the worker."""
import asyncio
import os

from channels.layers import get_channel_layer
from django.http import HttpResponse, JsonResponse


async def hello(request):
    return HttpResponse(f"hello from {os.getpid()}\n")


async def slow(request):
    await asyncio.sleep(float(request.GET.get("s", "0.5")))
    return HttpResponse(f"slow from {os.getpid()}\n")


async def block(request):
    """Blocks the server's event loop (a bug in an async view): its heartbeats stop."""
    import time

    time.sleep(float(request.GET.get("s", "5")))
    return HttpResponse("unblocked\n")


async def task(request):
    """Hand ``text`` to the ``tasks`` channel: a Channels worker process answers the ``results`` group."""
    await get_channel_layer().send("tasks", {"type": "task.run", "text": request.GET.get("text", "")})
    return JsonResponse({"queued": True, "pid": os.getpid()})
