from __future__ import annotations

from django.apps import AppConfig


class PreviewConfig(AppConfig):
    name = "preview_app"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from preview_app import checks  # noqa: F401  (registers the system checks)
