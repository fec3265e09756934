from __future__ import annotations

from typing import Any

from rest_framework import serializers

from assistant_app.context import ChatRequest, LastRun
from assistant_app.models import Message


class LastRunInput(serializers.Serializer):
    path = serializers.CharField(required=False, allow_blank=True, default="", max_length=4096)
    stdout = serializers.CharField(required=False, allow_blank=True, default="", trim_whitespace=False)
    stderr = serializers.CharField(required=False, allow_blank=True, default="", trim_whitespace=False)
    exit_code = serializers.IntegerField(required=False, allow_null=True, default=None)
    timed_out = serializers.BooleanField(required=False, default=False)


class ChatInput(serializers.Serializer):
    """Lengths are not limited here: what is too long for the model answers 413
    ``context_too_large`` (the request body itself is bounded by Django's upload limit)."""

    message = serializers.CharField(required=False, allow_blank=True, default="", trim_whitespace=False)
    action = serializers.ChoiceField(choices=Message.Action.choices, default=Message.Action.CHAT)
    path = serializers.CharField(required=False, allow_blank=True, default="", max_length=4096)
    file_content = serializers.CharField(required=False, allow_blank=True, default="", trim_whitespace=False)
    selection = serializers.CharField(required=False, allow_blank=True, default="", trim_whitespace=False)
    last_run = LastRunInput(required=False, allow_null=True, default=None)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        action = attrs["action"]
        if action == "chat" and not attrs["message"].strip():
            raise serializers.ValidationError({"message": ["Type a question."]})
        if action == "explain" and not (attrs["selection"].strip() or attrs["file_content"].strip()):
            raise serializers.ValidationError({"selection": ["Select the code to explain."]})
        if action == "fix" and not attrs["last_run"]:
            raise serializers.ValidationError({"last_run": ["Run the file first: there is no error to fix."]})
        return attrs

    def to_request(self) -> ChatRequest:
        data = self.validated_data
        run = data.get("last_run")
        return ChatRequest(
            action=data["action"],
            message=data["message"],
            path=data["path"],
            file_content=data["file_content"],
            selection=data["selection"],
            last_run=LastRun(**run) if run else None,
        )


class MessageOutput(serializers.ModelSerializer):
    class Meta:
        model = Message
        fields = ["id", "role", "content", "action", "incomplete", "error_code", "model", "created_at"]


class MessagesOutput(serializers.Serializer):
    messages = MessageOutput(many=True)


class StatusOutput(serializers.Serializer):
    configured = serializers.BooleanField()
    provider = serializers.CharField(allow_null=True)
    model = serializers.CharField(allow_null=True)
    hint = serializers.CharField(allow_blank=True)
