from __future__ import annotations

from django.apps import AppConfig


class LspConfig(AppConfig):
    """Language intelligence: language servers in the user's sandbox, bridged to Monaco
    (``docs/lsp-protocol.md``)."""

    name = "lsp_app"
    verbose_name = "Language servers"

    def ready(self) -> None:
        from lsp_app import checks  # noqa: F401  (registers the system checks)
