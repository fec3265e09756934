"""Refused terminal handshakes are security events in the audit log, without any credential."""

from __future__ import annotations

import pytest
from channels.testing import WebsocketCommunicator

from sessions_app.models import SessionEvent
from vibecode_project.asgi import application

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


async def _attempt(path: str, headers: list[tuple[bytes, bytes]]) -> bool:
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await communicator.connect()
    await communicator.disconnect()
    return connected


async def test_refused_handshakes_are_recorded(alice):
    path = "/api/vibecode/ws/terminal?session_id=abcdefgh23&terminal_id=1&token=not-a-real-token"
    assert not await _attempt(path, [(b"origin", b"https://evil.example")])
    assert not await _attempt(path, [(b"origin", b"http://localhost:8000")])
    events = [e async for e in SessionEvent.objects.filter(action="ws_refused").order_by("created_at")]
    assert [e.detail["reason"] for e in events] == ["origin not allowed", "no valid credential"]
    assert all(e.session_public_id == "abcdefgh23" for e in events)
    assert all("not-a-real-token" not in str(e.detail) for e in events)
