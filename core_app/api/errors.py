"""The one DRF exception handler: every API error becomes ``{"detail", "code"}``.

``detail`` is a sentence for a person; ``code`` is a stable machine code clients can branch on.
Validation errors also carry ``errors`` with the per-field messages.
"""

from __future__ import annotations

import logging
from typing import Any

import redis.exceptions
from django.core.exceptions import PermissionDenied, RequestDataTooBig, TooManyFilesSent
from django.db import DatabaseError, DataError, InterfaceError, OperationalError
from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import set_rollback

from core_app.errors import DatabaseUnavailable, DomainError, ServiceUnavailable

logger = logging.getLogger(__name__)


def _first_message(data: Any) -> str:
    """The first human message inside DRF's nested error structure."""
    if isinstance(data, dict):
        for key, value in data.items():
            message = _first_message(value)
            if key in ("detail", "non_field_errors"):
                return message
            return f"{key}: {message}"
        return "Invalid input."
    if isinstance(data, list):
        return _first_message(data[0]) if data else "Invalid input."
    return str(data)


def _first_code(codes: Any) -> str:
    if isinstance(codes, dict):
        if "code" in codes and isinstance(codes["code"], str):
            return codes["code"]
        for value in codes.values():
            return _first_code(value)
        return "invalid"
    if isinstance(codes, list):
        return _first_code(codes[0]) if codes else "invalid"
    return str(codes)


def error_body(detail: str, code: str, **extra: Any) -> dict[str, Any]:
    return {"detail": detail, "code": code, **extra}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, (OperationalError, InterfaceError)):
        logger.warning("database unavailable: %s", exc.__class__.__name__)
        exc = DatabaseUnavailable()
    elif isinstance(exc, redis.exceptions.ConnectionError):
        logger.warning("cache unavailable: %s", exc.__class__.__name__)
        exc = ServiceUnavailable("The cache is unavailable. Try again shortly.", code="cache_unavailable")
    elif isinstance(exc, DataError):
        # Input the database cannot store (a NUL byte, an out-of-range number): the client's fault.
        exc = exceptions.ValidationError("The request contains a value that cannot be stored.")
    elif isinstance(exc, DatabaseError):
        return None  # a real bug: let the middleware log it and answer a JSON 500

    if isinstance(exc, (RequestDataTooBig, TooManyFilesSent)):
        return Response(
            error_body("The request is too large for this server's limits.", "too_large"), status=413
        )

    if isinstance(exc, DomainError):
        set_rollback()
        return Response(error_body(exc.detail, exc.code, **exc.extra), status=exc.status_code)

    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    if not isinstance(exc, exceptions.APIException):
        return None

    headers: dict[str, str] = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header  # type: ignore[attr-defined]
    if getattr(exc, "wait", None) is not None:
        headers["Retry-After"] = str(max(1, int(exc.wait)))  # type: ignore[attr-defined]

    if isinstance(exc, exceptions.ValidationError):
        body = error_body(_first_message(exc.detail), "invalid", errors=exc.detail)
    else:
        code = _first_code(exc.get_codes())
        detail = exc.detail
        if isinstance(detail, dict) and "detail" in detail:
            # simplejwt's InvalidToken carries {"detail", "code", "messages"}.
            body = error_body(str(detail["detail"]), str(detail.get("code", code)))
        else:
            body = error_body(_first_message(detail), code)
    set_rollback()
    return Response(body, status=exc.status_code, headers=headers)


def validation_detail(errors: Any) -> str:
    """The sentence the handler would give for these serializer errors, for views that answer a
    validation failure with their own code (a ``DomainError`` carrying ``errors=``)."""
    return _first_message(errors)
