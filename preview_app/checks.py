"""System checks of previews: the app's cookies must never reach a preview origin."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, register


def cookie_domain_covers(cookie_domain: str | None, preview_domain: str) -> bool:
    """Whether a cookie set for ``cookie_domain`` would be sent to hosts ``*.<preview_domain>``
    (or the app would live among them). A host-only cookie (no domain) covers nothing else."""
    if not cookie_domain:
        return False
    cookie = cookie_domain.strip().lstrip(".").rstrip(".").lower()
    preview = preview_domain.strip().strip(".").lower()
    if not cookie or not preview:
        return False
    return cookie == preview or preview.endswith("." + cookie) or cookie.endswith("." + preview)


@register("vibecode")
def check_preview_cookie_domains(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    domain = settings.VIBECODE_PREVIEW_DOMAIN
    return [
        Error(
            f"{name}={getattr(settings, name)!r} covers the preview domain {domain!r}: the app's "
            "cookies would reach the pages users serve from their workspaces.",
            hint=f"Leave {name} unset (host-only cookies) or pick a domain that does not contain "
            "VIBECODE_PREVIEW_DOMAIN; preview origins need a domain of their own (docs/deploy.md).",
            id="vibecode.E015",
        )
        for name in ("SESSION_COOKIE_DOMAIN", "CSRF_COOKIE_DOMAIN")
        if cookie_domain_covers(getattr(settings, name, None), domain)
    ]
