from django.urls import include, path

urlpatterns = [
    path("", include("procman.demo_channels4.chat.urls")),
]
