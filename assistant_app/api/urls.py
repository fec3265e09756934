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
    path(
        "sessions/<str:session_id>/assistant/agent/settings",
        views.AgentSettingsView.as_view(),
        name="api-assistant-agent-settings",
    ),
    path(
        "sessions/<str:session_id>/assistant/agent/turns",
        views.AgentTurnsView.as_view(),
        name="api-assistant-agent-turns",
    ),
    path(
        "sessions/<str:session_id>/assistant/agent/turns/<int:turn_id>",
        views.AgentTurnDetailView.as_view(),
        name="api-assistant-agent-turn",
    ),
    path(
        "sessions/<str:session_id>/assistant/agent/turns/<int:turn_id>/events",
        views.AgentTurnEventsView.as_view(),
        name="api-assistant-agent-turn-events",
    ),
    path(
        "sessions/<str:session_id>/assistant/agent/turns/<int:turn_id>/steps/<int:index>/decision",
        views.AgentStepDecisionView.as_view(),
        name="api-assistant-agent-step-decision",
    ),
    path(
        "sessions/<str:session_id>/assistant/agent/turns/<int:turn_id>/stop",
        views.AgentTurnStopView.as_view(),
        name="api-assistant-agent-turn-stop",
    ),
    path(
        "sessions/<str:session_id>/assistant/agent/turns/<int:turn_id>/undo",
        views.AgentTurnUndoView.as_view(),
        name="api-assistant-agent-turn-undo",
    ),
]
