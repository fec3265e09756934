from __future__ import annotations

from django.urls import path

from preview_app.api import views

prefix = "sessions/<str:session_id>"
urlpatterns = [
    path(f"{prefix}/ports", views.PreviewPortsView.as_view(), name="api-preview-ports"),
    path(f"{prefix}/ports/<str:port>", views.PreviewPortView.as_view(), name="api-preview-port"),
]
