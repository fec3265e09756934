"""Domain errors of accounts; each has an HTTP status and a stable code."""

from __future__ import annotations

from core_app.errors import DomainError


class InvalidEditorSettings(DomainError):
    status_code = 400
    code = "invalid_editor_settings"
    default_detail = "The editor settings are not valid."


class UnknownEditorSetting(InvalidEditorSettings):
    code = "unknown_setting"
    default_detail = "There is no such editor setting."
