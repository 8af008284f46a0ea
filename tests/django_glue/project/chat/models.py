from django.db import models


class ChatMessage(models.Model):
    """The model of the Channels 1 docs' "chat-messages" example."""

    room = models.CharField(max_length=255)
    message = models.TextField()
