"""A conversation with the assistant per session, and its messages."""

from __future__ import annotations

from django.db import models

from sessions_app.models import Session


class Conversation(models.Model):
    session = models.OneToOneField(Session, on_delete=models.CASCADE, related_name="assistant_conversation")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Conversation of {self.session}"


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"

    class Action(models.TextChoices):
        CHAT = "chat"
        EXPLAIN = "explain"
        FIX = "fix"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)
    # On the user's messages: what they asked for.
    action = models.CharField(max_length=16, choices=Action.choices, blank=True)
    # On answers: cut short by a provider error or a dropped connection; the text is what arrived.
    incomplete = models.BooleanField(default=False)
    error_code = models.CharField(max_length=40, blank=True)
    provider = models.CharField(max_length=16, blank=True)
    model = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["conversation", "created_at"])]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:40]}"
