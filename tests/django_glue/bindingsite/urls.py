from django.shortcuts import render
from django.urls import path


def bridge_page(request):
    return render(request, "bridge.html")


urlpatterns = [path("bridge/", bridge_page)]
