"""Security events from sign-ins: failed ones (API and pages), and page sign-ins."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest

from core_app.api.throttling import login_failure_record
from core_app.net import client_ip
from sessions_app.audit import session_event_record
from sessions_app.models import SessionEvent


@receiver(user_login_failed)
def record_failed_login(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    # Django has already masked the password in `credentials`; only the username is kept.
    if request is not None:
        login_failure_record(request, credentials.get("username", ""))
    session_event_record(
        session=None,
        action=SessionEvent.Action.LOGIN_FAILED,
        username=str(credentials.get("username", ""))[:150],
        ip=client_ip(request) if request else "",
    )


@receiver(user_logged_in)
def record_page_login(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    session_event_record(
        session=None, action=SessionEvent.Action.LOGIN, actor=user, via="page", ip=client_ip(request)
    )
