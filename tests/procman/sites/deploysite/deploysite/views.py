import json
import os

from django.http import HttpResponse


def hello(request):
    return HttpResponse(f"hello from {os.environ.get('DEPLOYSITE_PREFIX', 'deploysite')} pid {os.getpid()}\n")


def meta(request):
    """What the application learns about the client through the proxy."""
    data = {"remote_addr": request.META.get("REMOTE_ADDR"), "scheme": request.scheme, "host": request.get_host()}
    return HttpResponse(json.dumps(data), content_type="application/json")
