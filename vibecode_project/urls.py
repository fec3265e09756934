from __future__ import annotations

from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from core_app import views as core_views

api_patterns = [
    path("", include("accounts_app.api.urls")),
    path("vibecode/", include("sessions_app.api.urls")),
    path("vibecode/", include("workspace_app.api.urls")),
    path("vibecode/", include("terminal_app.api.urls")),
    path("vibecode/", include("assistant_app.api.urls")),
    path("vibecode/", include("preview_app.api.urls")),
    path("health", core_views.health, name="api-health"),
    path("schema", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves Swagger UI's start-up script as a file: the CSP allows no inline script.
    path("docs", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
]

urlpatterns = [
    path("api/", include(api_patterns)),
    # Anything else under /api/ answers the JSON error shape, even with DEBUG on.
    re_path(r"^api/", core_views.api_not_found),
    path("health", core_views.health, name="health"),
    path("metrics", core_views.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("", include("accounts_app.urls")),
    path("", include("sessions_app.urls")),
    path("", include("preview_app.urls")),
]

handler500 = "core_app.views.server_error"
