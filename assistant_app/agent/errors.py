"""Agent mode's domain errors (``{detail, code}`` with a stable code)."""

from __future__ import annotations

from core_app.errors import DomainError


class TurnBusy(DomainError):
    status_code = 409
    code = "turn_busy"
    default_detail = "The agent is already working on a turn here. Wait for it, or stop it."


class TurnNotFound(DomainError):
    status_code = 404
    code = "turn_not_found"
    default_detail = "No such agent turn in this workspace."


class StepNotPending(DomainError):
    status_code = 409
    code = "step_not_pending"
    default_detail = "That step is not waiting for you (it was decided already, or the turn ended)."


class InvalidDecision(DomainError):
    code = "invalid_decision"


class AutoForbidden(DomainError):
    status_code = 403
    code = "auto_forbidden"
    default_detail = (
        "Auto-apply and auto-run are turned off on this server: every change and command is reviewed."
    )


class StepNotFound(DomainError):
    status_code = 404
    code = "step_not_found"
    default_detail = "No such step in this turn."
