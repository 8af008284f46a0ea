from django.urls import path

from . import views

urlpatterns = [path("", views.hello), path("slow", views.slow), path("pid", views.pid),
               path("leave-child", views.leave_child)]
