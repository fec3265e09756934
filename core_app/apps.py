from __future__ import annotations

from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core_app"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from core_app import backpressure, checks  # noqa: F401  (checks registers the system checks)

        backpressure.install()
