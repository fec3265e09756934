from __future__ import annotations

from django.urls import path

from accounts_app.api import views

urlpatterns = [
    path("auth/login", views.LoginView.as_view(), name="api-login"),
    path("auth/refresh", views.RefreshView.as_view(), name="api-refresh"),
    path("auth/logout", views.LogoutView.as_view(), name="api-logout"),
    path("auth/register", views.RegisterView.as_view(), name="api-register"),
    path("me", views.MeView.as_view(), name="api-me"),
    path("vibecode/settings/editor", views.EditorSettingsView.as_view(), name="api-editor-settings"),
]
