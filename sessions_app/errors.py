"""Domain errors of sessions; each has an HTTP status and a stable code."""

from __future__ import annotations

from core_app.errors import DomainError, ServiceUnavailable
from sessions_app.runtime.errors import (  # noqa: F401  (re-exported: one place to import from)
    EngineUnavailable,
    RuntimeFailure,
    RuntimeUnavailable,
    SandboxNotFound,
    SandboxNotRunning,
)


class SessionNotFound(DomainError):
    status_code = 404
    code = "session_not_found"
    default_detail = "No such session."


class SessionBusy(DomainError):
    status_code = 409
    code = "session_busy"
    default_detail = "The session is changing state right now. Try again in a moment."


class SessionRunning(DomainError):
    status_code = 409
    code = "session_running"
    default_detail = "The session is running. Suspend it first, or delete with force=true."


class QuotaExceeded(DomainError):
    status_code = 403
    code = "quota_exceeded"
    default_detail = "A quota would be exceeded."


class VolumeMissing(DomainError):
    status_code = 409
    code = "volume_missing"
    default_detail = "The session's workspace volume no longer exists; its files are gone."


class InvalidWorkbenchState(DomainError):
    status_code = 400
    code = "invalid_workbench"
    default_detail = "The workbench state is not valid."


class WorkbenchTooLarge(DomainError):
    status_code = 413
    code = "workbench_too_large"
    default_detail = "The workbench state is too large to keep."


class NoCapacity(ServiceUnavailable):
    code = "capacity"
    default_detail = (
        "Every container engine is full right now, so no new workspace can start. "
        "Try again later, or suspend a workspace you are not using."
    )
