"""Page routes of sessions: the dashboard at ``/`` and its form posts. Included at the root."""

from __future__ import annotations

from django.urls import path

from sessions_app import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("ide/<str:session_id>", views.ide, name="ide"),
    path("sessions/create", views.session_create, name="session-create"),
    path("sessions/<str:session_id>/suspend", views.session_suspend, name="session-suspend"),
    path("sessions/<str:session_id>/resume", views.session_resume, name="session-resume"),
    path("sessions/<str:session_id>/delete", views.session_delete, name="session-delete"),
]
