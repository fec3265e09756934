"""Reads of the assistant's conversations. Callers pass a session the user owns (loaded with
``sessions_app.selectors.session_get``), so ownership is already settled."""

from __future__ import annotations

from assistant_app.models import Message
from sessions_app.models import Session

MESSAGES_SHOWN = 200


def conversation_messages(*, session: Session, limit: int = MESSAGES_SHOWN) -> list[Message]:
    """The latest ``limit`` messages of the session's conversation, oldest first."""
    latest = Message.objects.filter(conversation__session=session).order_by("-created_at", "-id")[:limit]
    return list(reversed(latest))
