from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "procman.demo_channels4.chat"
    label = "chat_channels4"
