"""The OpenAPI schema's error responses: every operation documents the ``{detail, code}`` shape.

``ErrorAutoSchema`` (``REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"]``) adds to each operation the error
statuses it can answer, unless the view's ``extend_schema`` already declares that status:

- 400 for operations that take a body or query parameters (validation, bad input);
- 401 and 403 for views that require a signed-in user;
- 404 for paths with a parameter (someone else's session answers 404 too);
- 429 (rate limits), 500 and 503 (a dependency down) for all.

Views declare the statuses particular to them (409 ``session_not_running``, 413...) themselves,
with :data:`error_response`.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.permissions import AllowAny


class ApiErrorOutput(serializers.Serializer):
    """The body of every API error (``core_app.api.errors``)."""

    detail = serializers.CharField(help_text="A sentence for a person.")
    code = serializers.CharField(help_text="A stable machine code clients can branch on.")
    errors = serializers.JSONField(
        required=False, help_text="Validation errors only: the messages per field."
    )


def error_response(description: str) -> OpenApiResponse:
    return OpenApiResponse(ApiErrorOutput, description=description)


_DESCRIPTIONS = {
    "400": "Invalid input (`code`: `invalid`, or the domain error's code).",
    "401": "Not signed in, or the token is invalid or expired.",
    "403": "Not allowed (a quota, a staff-only operation).",
    "404": "Not found, or not yours.",
    "429": "Rate limited; `Retry-After` says when to try again.",
    "500": "An unexpected server error; it has been logged.",
    "503": "A service VibeCode depends on (the database, the cache, Docker) is unavailable.",
}


class ErrorAutoSchema(AutoSchema):
    def _error_statuses(self) -> list[str]:
        statuses = []
        query = [p for p in self.get_override_parameters() if getattr(p, "location", None) == "query"]
        if self.method in ("POST", "PUT", "PATCH") or query:
            statuses.append("400")
        if any(not isinstance(permission, AllowAny) for permission in self.view.get_permissions()):
            statuses += ["401", "403"]
        if "{" in self.path:
            statuses.append("404")
        return [*statuses, "429", "500", "503"]

    def _get_response_bodies(self, direction: str = "response") -> dict[str, Any]:  # type: ignore[override]
        responses = super()._get_response_bodies(direction)  # type: ignore[arg-type]
        for status in self._error_statuses():
            if status not in responses:
                responses[status] = self._get_response_for_code(
                    error_response(_DESCRIPTIONS[status]), status, ["application/json"], direction
                )
        return dict(sorted(responses.items()))
