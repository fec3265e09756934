from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from preview_app import services
from preview_app.models import PreviewPort


@admin.register(PreviewPort)
class PreviewPortAdmin(admin.ModelAdmin):
    list_display = ("session", "port", "public", "updated_at")
    list_filter = ("public",)
    search_fields = ("session__public_id", "session__owner__username")
    readonly_fields = ("session", "port", "public", "created_at", "updated_at")
    actions = ["make_private"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Make private")
    def make_private(self, request: HttpRequest, queryset: QuerySet[PreviewPort]) -> None:
        changed = services.preview_ports_make_private(
            rows=queryset.select_related("session"), actor=request.user
        )
        self.message_user(request, f"{changed} port(s) made private.", messages.SUCCESS)
