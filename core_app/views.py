"""Project-wide plain views: health, and JSON fallbacks for unknown API routes and errors."""

from __future__ import annotations

import hmac
import ipaddress

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST

from core_app.api.errors import error_body
from core_app.health import health_report
from core_app.metrics import exposition
from core_app.net import client_ip


def health(request: HttpRequest) -> JsonResponse:
    """``/api/health`` and ``/health``: 200 while the database answers, 503 when it does not.
    Staff and the metrics scraper (see :func:`metrics_allowed`) also get each check's details."""
    report = health_report(detailed=metrics_allowed(request))
    return JsonResponse(report, status=503 if report["status"] == "down" else 200)


def api_not_found(request: HttpRequest, *args: object, **kwargs: object) -> JsonResponse:
    return JsonResponse(error_body(f"No API route matches {request.path}.", "not_found"), status=404)


def server_error(request: HttpRequest, *args: object, **kwargs: object) -> JsonResponse:
    return JsonResponse(error_body("Something went wrong on the server.", "server_error"), status=500)


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics, for staff (session cookie) or for ``Authorization: Bearer
    <VIBECODE_METRICS_TOKEN>`` from an address in ``VIBECODE_METRICS_NETWORKS``."""
    if not metrics_allowed(request):
        return JsonResponse(
            error_body(
                "Metrics are for staff, or for the configured scraper token and network.", "forbidden"
            ),
            status=403,
        )
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)


def metrics_allowed(request: HttpRequest) -> bool:
    """Staff (session cookie), or the scraper: ``Authorization: Bearer <VIBECODE_METRICS_TOKEN>``
    from an address in ``VIBECODE_METRICS_NETWORKS``. The token is tried first: it needs no
    database, and the health check must answer while the database is down."""
    return _scraper_allowed(request) or _is_staff(request)


def _is_staff(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)
    try:
        return bool(user is not None and user.is_authenticated and user.is_staff)
    except DatabaseError:  # the session store is down: nobody is staff until it is back
        return False


def _scraper_allowed(request: HttpRequest) -> bool:
    token = settings.VIBECODE_METRICS_TOKEN
    offered = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not token or not offered or not hmac.compare_digest(offered.encode(), token.encode()):
        return False
    try:
        address = ipaddress.ip_address(client_ip(request))
    except ValueError:
        return False
    return any(address in network for network in settings.VIBECODE_METRICS_NETWORKS)
