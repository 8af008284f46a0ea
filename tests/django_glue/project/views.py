"""Views of the test project: one per HTTP feature the handler must carry."""
import os
import tempfile

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt

from django_glue.exceptions import ResponseLater

FILE_SIZE = 1_500_000  # three 512 KiB chunks, the last one partial


def hello(request):
    return HttpResponse("hello")


@csrf_exempt
def echo(request):
    return JsonResponse({
        "method": request.method,
        "path": request.path,
        "path_info": request.path_info,
        "query": request.GET.dict(),
        "post": request.POST.dict(),
        "body_length": len(request.body) if request.method != "POST" or not request.FILES else None,
        "files": {name: f.size for name, f in request.FILES.items()},
        "scheme": request.scheme,
        "secure": request.is_secure(),
        "host": request.get_host(),
        "remote_addr": request.META.get("REMOTE_ADDR"),
        "server_port": request.META.get("SERVER_PORT"),
        "content_type": request.content_type,
        "cookies": request.COOKIES,
        "x_custom": request.headers.get("X-Custom"),
    })


class NameForm(forms.Form):
    name = forms.CharField(max_length=20)


def form(request):
    if request.method == "POST":
        bound = NameForm(request.POST)
        if bound.is_valid():
            return HttpResponse(f"hi {bound.cleaned_data['name']}")
        return HttpResponse(f"invalid: {bound.errors.as_text()}", status=400)
    return render(request, "form.html")


def session_counter(request):
    request.session["count"] = request.session.get("count", 0) + 1
    return HttpResponse(str(request.session["count"]))


@login_required(login_url="/admin/login/")
def whoami(request):
    return HttpResponse(request.user.username)


def stream(request):
    parts = int(request.GET.get("parts", "5"))
    return StreamingHttpResponse((f"part{i};".encode() for i in range(parts)), content_type="text/plain")


def big(request):
    return HttpResponse(b"x" * FILE_SIZE, content_type="application/octet-stream")


def download(request):
    handle = tempfile.TemporaryFile()
    handle.write(bytes(range(256)) * (FILE_SIZE // 256) + b"z" * (FILE_SIZE % 256))
    handle.seek(0)
    return FileResponse(handle, content_type="application/octet-stream")


def error(request):
    raise RuntimeError("this view always fails")


def later(request):
    raise ResponseLater()


def cookie(request):
    response = HttpResponse("cookies set")
    response.set_cookie("first", "1")
    response.set_cookie("second", "2", httponly=True)
    return response


def pid(request):
    return HttpResponse(str(os.getpid()))
