"""The demo's only model: a chat message in a room."""

from django.db import models

#: Longest message text and handle accepted (longer input is cut, never an error).
MAX_TEXT = 2000
MAX_HANDLE = 40


class Message(models.Model):
    room = models.SlugField(max_length=50, db_index=True)
    handle = models.CharField(max_length=MAX_HANDLE)
    text = models.TextField(max_length=MAX_TEXT)
    created = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created", "id"]

    def as_dict(self) -> dict:
        """What the page's JavaScript receives for one message."""
        return {"handle": self.handle, "text": self.text, "created": self.created.strftime("%H:%M:%S")}

    def __str__(self) -> str:
        return f"[{self.room}] {self.handle}: {self.text[:40]}"
