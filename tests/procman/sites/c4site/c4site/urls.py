from django.urls import path

from . import views

urlpatterns = [
    path("", views.hello),
    path("slow", views.slow),
    path("task", views.task),
    path("block", views.block),
]
