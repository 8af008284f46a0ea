import os
import time

from django.http import HttpResponse


def hello(request):
    return HttpResponse(f"hello from {os.environ.get('HELLOSITE_PREFIX', 'hellosite')}\n")


def slow(request):
    """Takes a while, so a reload or a stop happens while it runs."""
    time.sleep(float(request.GET.get("s", "0.5")))
    return HttpResponse("slow done\n")


def pid(request):
    return HttpResponse(f"{os.getpid()}\n")
