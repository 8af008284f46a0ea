from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "tests.django_glue.project.chat"
    label = "chat"
