"""Page routes of previews. Included at the root."""

from __future__ import annotations

from django.urls import path

from preview_app import views

urlpatterns = [
    path("sessions/<str:session_id>/preview/<str:port>/", views.preview_open, name="preview-open"),
]
