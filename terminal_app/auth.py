"""Who is opening a terminal: the page's session cookie, a JWT (``token=``, as in the seed
guide), or a single-use ticket (``ticket=``). Credentials are never logged."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import AccessToken

from terminal_app.tickets import ticket_redeem


def terminal_user(
    *, scope_user: Any, token: str, ticket: str, session_public_id: str, cookie_allowed: bool = True
) -> AbstractBaseUser | None:
    """The user a handshake's credential names, or None. The session cookie (``scope_user``)
    counts only when ``cookie_allowed`` (the handshake had an Origin, checked already).
    Blocking (cache and database): call through ``database_sync_to_async``."""
    user_id: int | None = None
    if ticket:
        user_id = ticket_redeem(ticket=ticket, session_public_id=session_public_id)
        if user_id is None:
            return None
    elif token:
        try:
            user_id = int(AccessToken(token)["user_id"])
        except (TokenError, KeyError, ValueError):
            return None
    elif cookie_allowed and scope_user is not None and scope_user.is_authenticated:
        return scope_user
    if user_id is None:
        return None
    return get_user_model().objects.filter(pk=user_id, is_active=True).first()
