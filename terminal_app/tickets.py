"""Short-lived, single-use tickets that let a WebSocket client authenticate without putting a
long-lived JWT in a URL. Stored in the cache (Redis when configured, so any daphne can redeem)."""

from __future__ import annotations

import secrets

from django.core.cache import cache

TICKET_TTL_SECONDS = 30
_PREFIX = "terminal-ticket:"


def ticket_issue(*, user_id: int, session_public_id: str) -> str:
    ticket = secrets.token_urlsafe(32)
    cache.set(_PREFIX + ticket, {"user_id": user_id, "session": session_public_id}, TICKET_TTL_SECONDS)
    return ticket


def ticket_redeem(*, ticket: str, session_public_id: str) -> int | None:
    """The user id a ticket was issued to, once: whoever deletes the key first wins."""
    if not ticket or len(ticket) > 100:
        return None
    key = _PREFIX + ticket
    data = cache.get(key)
    if not data or not cache.delete(key):
        return None
    if data.get("session") != session_public_id:
        return None
    return int(data["user_id"])
