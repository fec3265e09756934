"""Last line of defence for ``/api/``: an uncaught exception still answers the JSON error shape."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.functional import SimpleLazyObject, empty

from core_app import logging as log_context
from core_app.api.errors import error_body

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("vibecode.access")


def is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


class ApiErrorMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, (OperationalError, InterfaceError)):
            logger.warning("database unavailable on %s: %s", request.path, type(exception).__name__)
            return JsonResponse(
                error_body("The database is unavailable. Try again shortly.", "database_unavailable"),
                status=503,
            )
        if not is_api(request):
            return None
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return JsonResponse(
            error_body("Something went wrong on the server. It has been logged.", "server_error"),
            status=500,
        )


class AccessLogMiddleware:
    """One line per request: method, path (never the query string: tokens and tickets travel
    there), status, duration and user. Daphne's own access log is off (``-v 0``) for that reason.
    Each request gets an id, answered in ``X-Request-ID``."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.monotonic()
        request.id = uuid.uuid4().hex[:12]  # type: ignore[attr-defined]
        tokens = [
            log_context.request_id.set(request.id),
            log_context.user_id.set("-"),  # type: ignore[attr-defined]
            log_context.session_id.set("-"),
        ]
        try:
            response = self.get_response(request)
            response["X-Request-ID"] = request.id  # type: ignore[attr-defined]
            user = _user_id(request)
            if user != "-":
                log_context.user_id.set(user)
            # Logged before the context is reset, so the line's JSON carries this request's ids
            # (and the session id a view set), not the "-" of no request.
            access_logger.info(
                "%s %s %s %.1fms user=%s request=%s",
                request.method,
                request.path,
                response.status_code,
                (time.monotonic() - started) * 1000,
                user,
                request.id,  # type: ignore[attr-defined]
                extra={"method": request.method, "path": request.path, "status": response.status_code},
            )
            return response
        finally:
            for var, token in zip(
                (log_context.request_id, log_context.user_id, log_context.session_id), tokens, strict=True
            ):
                var.reset(token)


def _user_id(request: HttpRequest) -> str:
    """The user's id if the request already knows it. A lazy user not looked up yet stays
    unlooked: logging must not query a database that may be the reason the request failed."""
    user = request.__dict__.get("user")
    if user is None or (isinstance(user, SimpleLazyObject) and user._wrapped is empty):  # type: ignore[attr-defined]
        return "-"
    return str(user.pk) if user.is_authenticated else "-"
