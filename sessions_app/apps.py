from __future__ import annotations

from django.apps import AppConfig


class SessionsConfig(AppConfig):
    name = "sessions_app"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here because they need the models, which are loaded only once apps are ready.
        from sessions_app import (
            checks,  # noqa: F401  (registers the system checks)
            monitoring,
        )

        monitoring.register()
