"""Django system checks for misconfiguration, with stable ids (``vibecode.E001``...)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register


@register("vibecode")
def check_secrets(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    if not settings.DEBUG and len(settings.JWT_SECRET) < 32:
        messages.append(
            Error(
                "JWT_SECRET is shorter than 32 characters.",
                hint='Generate one with: python3 -c "import secrets; print(secrets.token_hex(32))"',
                id="vibecode.E001",
            )
        )
    if not settings.DEBUG and not settings.REDIS_URL:
        messages.append(
            Warning(
                "REDIS_URL is not set: terminals and rate limits only work within one process.",
                hint="Set REDIS_URL when running more than one daphne process.",
                id="vibecode.W001",
            )
        )
    return messages
