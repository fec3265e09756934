from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from assistant_app.context import ChatRequest, LastRun
from assistant_app.models import AgentStep, AgentTurn, Message


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


# --- agent mode --------------------------------------------------------------------------------


class AgentSettingsInput(serializers.Serializer):
    auto_apply = serializers.BooleanField(required=False)
    auto_run = serializers.BooleanField(required=False)


class AgentSettingsOutput(serializers.Serializer):
    auto_apply = serializers.BooleanField()
    auto_run = serializers.BooleanField()
    auto_allowed = serializers.BooleanField(help_text="False: the server forbids auto-apply and auto-run.")


class AgentTurnInput(serializers.Serializer):
    goal = serializers.CharField(max_length=20000, trim_whitespace=True)


class AgentStepOutput(serializers.ModelSerializer):
    class Meta:
        model = AgentStep
        fields = [
            "index",
            "kind",
            "status",
            "arguments",
            "result",
            "error_code",
            "path",
            "diff",
            "command",
            "run_id",
            "exit_code",
            "answer",
            "version",
            "created_at",
            "updated_at",
        ]


class AgentTurnOutput(serializers.ModelSerializer):
    steps = serializers.SerializerMethodField()
    pending_step = serializers.SerializerMethodField(
        help_text="The index of the step waiting for the user, or null."
    )

    class Meta:
        model = AgentTurn
        fields = [
            "id",
            "goal",
            "status",
            "summary",
            "error_code",
            "error_detail",
            "provider",
            "model",
            "steps_used",
            "tokens_used",
            "accept_all",
            "cancel_requested",
            "version",
            "created_at",
            "finished_at",
            "pending_step",
            "steps",
        ]

    def _steps(self, turn: AgentTurn) -> list[AgentStep]:
        return sorted(turn.steps.all(), key=lambda step: step.index)

    @extend_schema_field(AgentStepOutput(many=True))
    def get_steps(self, turn: AgentTurn) -> list[dict[str, Any]]:
        return AgentStepOutput(self._steps(turn), many=True).data  # type: ignore[return-value]

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_pending_step(self, turn: AgentTurn) -> int | None:
        pending = [s.index for s in self._steps(turn) if s.status == AgentStep.Status.PENDING]
        return pending[0] if pending else None


class AgentTurnsOutput(serializers.Serializer):
    turns = AgentTurnOutput(many=True)


class AgentDecisionInput(serializers.Serializer):
    decision = serializers.ChoiceField(choices=["accept", "accept_all", "reject", "run", "skip", "answer"])
    answer = serializers.CharField(required=False, allow_blank=True, default="", max_length=10000)


class AgentUndoInput(serializers.Serializer):
    force = serializers.BooleanField(
        required=False, default=False, help_text="Also restore files edited since the agent changed them."
    )


class AgentUndoOutput(serializers.Serializer):
    restored = serializers.ListField(child=serializers.CharField())
    conflicts = serializers.ListField(
        child=serializers.CharField(),
        help_text="Files edited since: left alone (send force to restore them).",
    )
    turn = AgentTurnOutput()
