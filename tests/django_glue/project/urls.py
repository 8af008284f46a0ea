from django.contrib import admin
from django.urls import path

from . import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("hello/", views.hello),
    path("echo/", views.echo),
    path("form/", views.form),
    path("session/", views.session_counter),
    path("whoami/", views.whoami),
    path("stream/", views.stream),
    path("big/", views.big),
    path("download/", views.download),
    path("error/", views.error),
    path("later/", views.later),
    path("cookie/", views.cookie),
    path("pid/", views.pid),
]
