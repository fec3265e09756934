from __future__ import annotations

from django.apps import AppConfig


class TerminalConfig(AppConfig):
    name = "terminal_app"
    default_auto_field = "django.db.models.BigAutoField"
