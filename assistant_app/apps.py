from __future__ import annotations

from django.apps import AppConfig


class AssistantConfig(AppConfig):
    name = "assistant_app"
    verbose_name = "AI assistant"
    default_auto_field = "django.db.models.BigAutoField"
