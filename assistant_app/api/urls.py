from __future__ import annotations

from django.urls import path

from assistant_app.api import views

urlpatterns = [
    path("assistant/status", views.AssistantStatusView.as_view(), name="api-assistant-status"),
    path(
        "sessions/<str:session_id>/assistant/chat",
        views.AssistantChatView.as_view(),
        name="api-assistant-chat",
    ),
    path(
        "sessions/<str:session_id>/assistant/messages",
        views.AssistantMessagesView.as_view(),
        name="api-assistant-messages",
    ),
]
