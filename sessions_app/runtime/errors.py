"""Errors a runtime raises. They are domain errors, so the API turns them into JSON."""

from __future__ import annotations

from core_app.errors import DomainError, ServiceUnavailable


class RuntimeUnavailable(ServiceUnavailable):
    code = "runtime_unavailable"
    default_detail = "The container engine is not reachable. Ask an operator to check Docker."


class RuntimeFailure(DomainError):
    """The engine answered, but refused (bad image, out of resources...)."""

    status_code = 502
    code = "runtime_error"
    default_detail = "The container engine refused the operation."


class SandboxNotFound(DomainError):
    status_code = 409
    code = "sandbox_missing"
    default_detail = "The session's container no longer exists."


class SandboxNotRunning(DomainError):
    status_code = 409
    code = "session_not_running"
    default_detail = "The session is not running. Resume it first."


class VolumeNotFound(DomainError):
    status_code = 409
    code = "volume_missing"
    default_detail = "The workspace volume does not exist."


class VolumeNotEmpty(DomainError):
    status_code = 409
    code = "workspace_not_empty"
    default_detail = "The workspace already has files."


class EngineUnavailable(RuntimeUnavailable):
    """One engine (not ``local``) does not answer: only its workspaces are affected."""

    code = "engine_unavailable"
    default_detail = "The container engine holding this workspace is not reachable."

    @classmethod
    def naming(cls, engine: str) -> EngineUnavailable:
        error = cls(
            f"The container engine {engine!r} holding this workspace is not reachable. "
            "Workspaces on other engines work on; ask an operator to check it.",
            engine=engine,
        )
        return error
