import os
import subprocess
import sys
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


def leave_child(request):
    """Start a short-lived child and do not wait for it; answers its pid (an orphan once this
    worker dies)."""
    seconds = request.GET.get("s", "1")
    child = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({float(seconds)})"])
    return HttpResponse(f"{child.pid}\n")
