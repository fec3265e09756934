"""The audit log: who did what to which session, when. Services, sign-in views and the terminal
gate append to it; staff read it in the admin. Nothing ever edits or deletes an event."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser

from sessions_app.models import Session, SessionEvent


def session_event_record(
    *,
    session: Session | None,
    action: str,
    actor: AbstractBaseUser | None = None,
    public_id: str = "",
    **detail: Any,
) -> SessionEvent:
    """Append to the audit log. ``public_id`` names a session whose row is (about to be) gone."""
    return SessionEvent.objects.create(
        session=session,
        session_public_id=session.public_id if session else public_id,
        actor=actor if actor is not None and actor.is_authenticated else None,
        action=action,
        detail=detail,
    )
