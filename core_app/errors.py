"""Domain errors: exceptions with a meaning, an HTTP status and a stable machine code.

Services raise these; one DRF exception handler (``core_app.api.errors``) turns them into the
JSON error shape ``{"detail": ..., "code": ...}``. Apps subclass :class:`DomainError` for their own
meanings (``SessionNotRunning``, ``QuotaExceeded``, ``PathOutsideWorkspace``...).
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    status_code: int = 400
    code: str = "bad_request"
    default_detail: str = "The request could not be carried out."

    def __init__(self, detail: str | None = None, *, code: str | None = None, **extra: Any) -> None:
        self.detail = detail or self.default_detail
        if code is not None:
            self.code = code
        # Extra fields are merged into the JSON body, e.g. the current etag of a 409.
        self.extra = extra
        super().__init__(self.detail)


class ServiceUnavailable(DomainError):
    status_code = 503
    code = "service_unavailable"
    default_detail = "A service VibeCode depends on is unavailable. Try again shortly."


class DatabaseUnavailable(ServiceUnavailable):
    code = "database_unavailable"
    default_detail = "The database is unavailable. Try again shortly."
