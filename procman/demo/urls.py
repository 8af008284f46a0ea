from django.urls import path

from procman.demo.chat import views

urlpatterns = [
    path("", views.index, name="index"),
    path("room/<slug:room>/", views.room, name="room"),
    path("stats.json", views.stats, name="stats"),
]
