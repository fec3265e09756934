"""WebSocket routes. The terminal consumer arrives with the terminal issue."""

from __future__ import annotations

from django.urls import URLPattern

websocket_urlpatterns: list[URLPattern] = []
