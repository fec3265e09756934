"""Project-wide plain views: health, and JSON fallbacks for unknown API routes and errors."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from core_app.api.errors import error_body
from core_app.health import health_report


def health(request: HttpRequest) -> JsonResponse:
    """``/api/health`` and ``/health``: 200 while the database answers, 503 when it does not."""
    report = health_report()
    return JsonResponse(report, status=503 if report["status"] == "down" else 200)


def api_not_found(request: HttpRequest, *args: object, **kwargs: object) -> JsonResponse:
    return JsonResponse(error_body(f"No API route matches {request.path}.", "not_found"), status=404)


def server_error(request: HttpRequest, *args: object, **kwargs: object) -> JsonResponse:
    return JsonResponse(error_body("Something went wrong on the server.", "server_error"), status=500)
