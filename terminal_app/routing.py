"""WebSocket routes (the seed guide's path)."""

from __future__ import annotations

from django.urls import re_path

from terminal_app.consumers import TerminalConsumer

websocket_urlpatterns = [
    re_path(r"^api/vibecode/ws/terminal$", TerminalConsumer.as_asgi()),
]
