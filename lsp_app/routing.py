"""WebSocket routes of the language server bridge."""

from __future__ import annotations

from django.urls import re_path

from lsp_app.consumers import LanguageServerConsumer

websocket_urlpatterns = [
    re_path(r"^api/vibecode/ws/lsp$", LanguageServerConsumer.as_asgi()),
]
