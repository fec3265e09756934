from __future__ import annotations

from django.urls import path

from accounts_app import views

urlpatterns = [
    path("login", views.LoginPage.as_view(), name="login"),
    path("logout", views.logout_page, name="logout"),
]
