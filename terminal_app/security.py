"""The terminal's handshake guard: the Origin check, and refused handshakes in the audit log.

A browser always sends ``Origin`` on a WebSocket handshake, so a present one that is not ours is
a page of another site riding on the user's cookie: refused, whatever the credential. A client
that sends none is not a browser (``wscat``, a script): it passes here, and the consumer then
takes only a JWT or a ticket from it, never the session cookie alone (``origin_present``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

from channels.db import database_sync_to_async
from channels.security.websocket import OriginValidator

from sessions_app.audit import session_event_record
from sessions_app.models import SLUG_ALPHABET, SessionEvent


def ws_refusal_record(*, scope: dict[str, Any], reason: str) -> None:
    """A ``ws_refused`` security event. Blocking: call through ``database_sync_to_async``.
    Only the session id is taken from the query string, never a token or ticket."""
    query = parse_qs(scope.get("query_string", b"").decode("latin1"))
    session_id = (query.get("session_id") or [""])[0][:16]
    if not all(char in SLUG_ALPHABET for char in session_id):
        session_id = ""
    client = (scope.get("client") or ["", 0])[0]
    session_event_record(
        session=None, action=SessionEvent.Action.WS_REFUSED, public_id=session_id, reason=reason, ip=client
    )


def origin_present(scope: dict[str, Any]) -> bool:
    """Whether the handshake carried an ``Origin`` header (checked by the validator below)."""
    return any(name == b"origin" for name, _value in scope.get("headers") or [])


class AuditedOriginValidator(OriginValidator):
    """Channels' Origin check (an Origin not allowed: HTTP 403), recording each refusal. No
    Origin at all passes on to the consumer, which then requires a JWT or a ticket."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket":
            if not origin_present(scope):
                return await self.application(scope, receive, send)
            origin = dict(scope.get("headers") or []).get(b"origin")
            parsed = urlparse(origin.decode("latin1")) if origin else None
            if not self.valid_origin(parsed):
                await database_sync_to_async(ws_refusal_record)(scope=scope, reason="origin not allowed")
        return await super().__call__(scope, receive, send)
