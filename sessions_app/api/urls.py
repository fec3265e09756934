from __future__ import annotations

from django.urls import path

from sessions_app.api import views

urlpatterns = [
    path("sessions", views.SessionListView.as_view(), name="api-sessions"),
    path("sessions/create", views.SessionCreateView.as_view(), name="api-session-create"),
    path("sessions/<str:session_id>", views.SessionDetailView.as_view(), name="api-session"),
    path("sessions/<str:session_id>/suspend", views.SessionSuspendView.as_view(), name="api-session-suspend"),
    path("sessions/<str:session_id>/resume", views.SessionResumeView.as_view(), name="api-session-resume"),
    path(
        "sessions/<str:session_id>/keepalive",
        views.SessionKeepaliveView.as_view(),
        name="api-session-keepalive",
    ),
    path("sessions/<str:session_id>/stats", views.SessionStatsView.as_view(), name="api-session-stats"),
    path("sessions/<str:session_id>/workbench", views.WorkbenchView.as_view(), name="api-session-workbench"),
]
