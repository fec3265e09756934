"""Who is opening a terminal: the page's session cookie, a JWT (``token=``, as in the seed
guide), or a single-use ticket (``ticket=``). Credentials are never logged."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import AccessToken

from sessions_app import selectors
from sessions_app.errors import SessionNotFound
from sessions_app.models import Session
from terminal_app import limits
from terminal_app.security import origin_present
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


@dataclass(frozen=True)
class Handshake:
    """What a WebSocket handshake's checks found: the user and their session, or why not."""

    user: AbstractBaseUser | None = None
    session: Session | None = None
    rate_limited: bool = False
    refusal: str = ""  # why the handshake is refused (for the log); "" when it passed


async def handshake_check(
    *, scope: dict[str, Any], params: dict[str, str], bad_request: str = ""
) -> Handshake:
    """The checks every sandbox WebSocket (terminals, language servers) makes, in this order: the
    client IP's handshake rate, the credential, ``bad_request`` (a reason the consumer found in
    its own parameters, refused once the credential is known), the user's handshake rate, and
    the session, which must be the user's. Without an Origin header a browser's cookie cannot be
    told from a forged request, so only an explicit credential (a JWT or a ticket) is taken then."""
    public_id = params.get("session_id", "")
    if await sync_to_async(limits.handshake_ip_limited, thread_sensitive=False)(scope=scope):
        return Handshake(rate_limited=True)
    user = await database_sync_to_async(terminal_user)(
        scope_user=scope.get("user"),
        token=params.get("token", ""),
        ticket=params.get("ticket", ""),
        session_public_id=public_id,
        cookie_allowed=origin_present(scope),
    )
    if user is None or bad_request:
        return Handshake(refusal="no valid credential" if user is None else bad_request)
    if await sync_to_async(limits.handshake_user_limited, thread_sensitive=False)(user_id=user.pk):
        return Handshake(rate_limited=True)
    try:
        session = await database_sync_to_async(selectors.session_get)(user=user, public_id=public_id)
    except SessionNotFound:
        return Handshake(refusal="unknown session or not the owner's")
    return Handshake(user=user, session=session)
