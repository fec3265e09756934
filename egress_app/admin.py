"""Staff read the egress audit; nobody edits it (the proxy writes it, maintenance prunes it)."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from egress_app.models import EgressConnection


@admin.register(EgressConnection)
class EgressConnectionAdmin(admin.ModelAdmin):
    list_display = [
        "started_at",
        "session_public_id",
        "method",
        "host",
        "port",
        "outcome",
        "status_code",
        "bytes_up",
        "bytes_down",
        "duration",
    ]
    list_filter = ["outcome", "method", "port"]
    search_fields = ["session_public_id", "host"]
    date_hierarchy = "started_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: EgressConnection | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: EgressConnection | None = None) -> bool:
        return False
