from __future__ import annotations

from django.apps import AppConfig


class WorkspaceConfig(AppConfig):
    name = "workspace_app"
    default_auto_field = "django.db.models.BigAutoField"
