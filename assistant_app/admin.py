from __future__ import annotations

from django.contrib import admin

from assistant_app.models import AgentAuditEvent, Conversation, Message

MESSAGE_FIELDS = ("created_at", "role", "action", "content", "incomplete", "error_code", "model")


class MessageInline(admin.TabularInline):
    model = Message
    fields = MESSAGE_FIELDS
    readonly_fields = MESSAGE_FIELDS
    extra = 0
    can_delete = False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["session", "created_at", "updated_at"]
    readonly_fields = ["session", "created_at", "updated_at"]
    search_fields = ["session__public_id", "session__owner__username"]
    inlines = [MessageInline]

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False


@admin.register(AgentAuditEvent)
class AgentAuditEventAdmin(admin.ModelAdmin):
    """What agents wrote and ran, per user and workspace; read-only, like the session audit."""

    list_display = ["created_at", "action", "session_public_id", "actor", "turn_id"]
    list_filter = ["action"]
    search_fields = ["session_public_id", "actor__username"]
    readonly_fields = ["created_at", "action", "session_public_id", "actor", "turn_id", "detail"]

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False
