from __future__ import annotations

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts_app"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from accounts_app import signals  # noqa: F401  (connects the security-event receivers)
