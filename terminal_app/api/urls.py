from __future__ import annotations

from django.urls import path

from terminal_app.api import views

prefix = "sessions/<str:session_id>/terminals"
urlpatterns = [
    path(prefix, views.TerminalListView.as_view(), name="api-terminals"),
    path(f"{prefix}/ticket", views.TicketView.as_view(), name="api-terminal-ticket"),
    path(f"{prefix}/<str:terminal_id>", views.TerminalDetailView.as_view(), name="api-terminal"),
]
