"""The terminal consumer's logic through ``WebsocketCommunicator``: who is refused, what a
suspended session answers, and the messages of docs/terminal-protocol.md.

Real things (STYLE.md 13): the sessions that need a shell are real sandboxes on the Docker
engine, the channel layer is the configured one (Redis under ``make test``). The wire itself
(daphne, a real WebSocket client) is covered by ``test_terminal_wire.py``.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.test import Client
from rest_framework_simplejwt.tokens import AccessToken

from sessions_app import services
from sessions_app.models import Session
from sessions_app.runtime.docker import DockerRuntime
from terminal_app.consumers import CLOSE_NORMAL, CLOSE_NOT_RUNNING, CLOSE_SESSION_STOPPED
from terminal_app.notify import terminal_group
from terminal_app.tickets import ticket_issue
from vibecode_project.asgi import application

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

ORIGIN = (b"origin", b"http://localhost:8000")
WAIT = 20.0  # seconds; a first attach starts the tmux server and a login shell
ANSI = re.compile(rb"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[()][A-Za-z0-9]|[=>78DEHMc])")


# --- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture
def running(alice, sandboxes) -> Session:
    """A real running session of alice's, removed (with its volume) after the test."""
    return services.session_create(user=alice, name="terminal")


def _row_only(owner, status: str) -> Session:
    """A session row with no container behind it: enough for every refusal, which must be
    decided before anything touches the sandbox."""
    name = f"vibecode-{owner.pk}-row{uuid.uuid4().hex[:8]}"
    return Session.objects.create(
        owner=owner,
        name="row only",
        status=status,
        container_name=name,
        volume_name=name + "-ws",
        image="vibecode-sandbox:latest",
    )


@pytest.fixture
def row_session(alice) -> Session:
    return _row_only(alice, Session.Status.RUNNING)


@pytest.fixture
def ttys_opened(monkeypatch) -> list[Any]:
    """Every TTY the consumer asks the runtime for; the real one still opens."""
    calls: list[Any] = []
    real = DockerRuntime.open_tty

    def spy(self, ref, argv, **kwargs):
        calls.append(argv)
        return real(self, ref, argv, **kwargs)

    monkeypatch.setattr(DockerRuntime, "open_tty", spy)
    return calls


def token_for(user, *, lifetime: timedelta | None = None) -> str:
    token = AccessToken.for_user(user)
    if lifetime is not None:
        token.set_exp(lifetime=lifetime)
    return str(token)


def path(session_id: str, **params: str) -> str:
    query = "&".join(f"{key}={value}" for key, value in {"session_id": session_id, **params}.items())
    return f"/api/vibecode/ws/terminal?{query}"


def communicator(url: str, headers: list[tuple[bytes, bytes]] | None = None) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, url, headers=[ORIGIN] if headers is None else headers)


async def refused(url: str, headers: list[tuple[bytes, bytes]] | None = None) -> bool:
    """True when the handshake is refused (daphne answers HTTP 403 to a close before accept)."""
    comm = communicator(url, headers)
    connected, _ = await comm.connect(timeout=WAIT)
    if connected:
        await comm.disconnect()
    return not connected


async def receive_json(comm: WebsocketCommunicator, timeout: float = WAIT) -> dict[str, Any]:
    """The next text message, skipping terminal output."""
    deadline = time.monotonic() + timeout
    while True:
        message = await comm.receive_output(timeout=max(0.01, deadline - time.monotonic()))
        if message["type"] == "websocket.close":
            raise AssertionError(f"closed with {message.get('code')} while waiting for a message")
        if message.get("text") is not None:
            return json.loads(message["text"])


async def receive_close(comm: WebsocketCommunicator, timeout: float = WAIT) -> int:
    deadline = time.monotonic() + timeout
    while True:
        message = await comm.receive_output(timeout=max(0.01, deadline - time.monotonic()))
        if message["type"] == "websocket.close":
            return int(message.get("code", CLOSE_NORMAL))


async def receive_text_until(comm: WebsocketCommunicator, pattern: bytes, timeout: float = WAIT) -> bytes:
    """Terminal output (escape sequences removed) up to the first match of ``pattern``."""
    seen = b""
    deadline = time.monotonic() + timeout
    while not re.search(pattern, ANSI.sub(b"", seen)):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {pattern!r} within {timeout} s; output ended with {seen[-300:]!r}")
        message = await comm.receive_output(timeout=left)
        assert message["type"] != "websocket.close", f"closed with {message.get('code')}"
        seen += message.get("bytes") or b""
    return ANSI.sub(b"", seen)


async def open_terminal(session: Session, user, **params: str) -> WebsocketCommunicator:
    comm = communicator(path(session.public_id, token=token_for(user), **params))
    connected, _ = await comm.connect(timeout=WAIT)
    assert connected
    assert (await receive_json(comm))["status"] == "connected"
    return comm


# --- refusals: the handshake fails and no TTY is ever opened -----------------------------------


async def test_it_refuses_a_connection_without_credential(row_session, ttys_opened):
    assert await refused(path(row_session.public_id))
    assert ttys_opened == []


@pytest.mark.parametrize("kind", ["garbage", "forged", "expired"])
async def test_it_refuses_a_bad_or_expired_jwt(row_session, alice, ttys_opened, kind):
    token = {
        "garbage": "not-a-jwt",
        # A well-formed token whose signature does not match this server's key.
        "forged": token_for(alice)[:-4] + "AAAA",
        "expired": token_for(alice, lifetime=-timedelta(seconds=1)),
    }[kind]
    assert await refused(path(row_session.public_id, token=token))
    assert ttys_opened == []


async def test_it_refuses_a_reused_ticket(running, alice, ttys_opened):
    ticket = await asyncio.to_thread(ticket_issue, user_id=alice.pk, session_public_id=running.public_id)
    comm = communicator(path(running.public_id, ticket=ticket))
    connected, _ = await comm.connect(timeout=WAIT)
    assert connected
    assert (await receive_json(comm))["status"] == "connected"
    await comm.disconnect()
    assert len(ttys_opened) == 1

    assert await refused(path(running.public_id, ticket=ticket))
    assert len(ttys_opened) == 1


async def test_it_refuses_a_ticket_issued_for_another_session(row_session, alice, ttys_opened):
    other = await asyncio.to_thread(_row_only, alice, Session.Status.RUNNING)
    ticket = await asyncio.to_thread(ticket_issue, user_id=alice.pk, session_public_id=other.public_id)
    assert await refused(path(row_session.public_id, ticket=ticket))
    assert await refused(path(row_session.public_id, ticket="never-issued"))
    assert ttys_opened == []


@pytest.mark.parametrize("terminal_id", ["a" * 33, "has%20space", "semi%3Bcolon", "dot.dot", "..%2Fx"])
async def test_it_refuses_a_bad_terminal_id(row_session, alice, ttys_opened, terminal_id):
    assert await refused(path(row_session.public_id, token=token_for(alice), terminal_id=terminal_id))
    assert ttys_opened == []


async def test_it_refuses_an_unknown_session(alice, ttys_opened):
    assert await refused(path("nosuchsess", token=token_for(alice)))
    assert ttys_opened == []


async def test_it_refuses_bob_on_alices_session(row_session, bob, ttys_opened):
    assert await refused(path(row_session.public_id, token=token_for(bob)))
    ticket = await asyncio.to_thread(ticket_issue, user_id=bob.pk, session_public_id=row_session.public_id)
    assert await refused(path(row_session.public_id, ticket=ticket))
    assert ttys_opened == []


@pytest.mark.parametrize("origin", [b"https://evil.example", None])
async def test_it_refuses_another_origin_or_none(row_session, alice, ttys_opened, origin):
    headers = [] if origin is None else [(b"origin", origin)]
    assert await refused(path(row_session.public_id, token=token_for(alice)), headers)
    assert ttys_opened == []


async def test_a_suspended_session_answers_a_status_then_4409(alice, ttys_opened):
    session = await asyncio.to_thread(_row_only, alice, Session.Status.SUSPENDED)
    comm = communicator(path(session.public_id, token=token_for(alice)))
    connected, _ = await comm.connect(timeout=WAIT)
    assert connected
    status = await receive_json(comm)
    assert status["type"] == "status" and status["status"] == "suspended"
    assert "Resume" in status["message"]
    assert await receive_close(comm) == CLOSE_NOT_RUNNING
    assert ttys_opened == []


# --- an open terminal -----------------------------------------------------------------------------


async def test_it_echoes_input_through_the_shell(running, alice):
    comm = await open_terminal(running, alice)
    # The shell computes the marker, so the echo of the typed line cannot match it.
    await comm.send_json_to({"type": "input", "data": "echo HI$((2+3))\r"})
    assert b"HI5" in await receive_text_until(comm, rb"HI5")
    # Binary frames are raw input too.
    await comm.send_to(bytes_data=b"echo BIN$((3+4))\r")
    await receive_text_until(comm, rb"BIN7")
    await comm.disconnect()


async def test_the_page_session_cookie_authenticates(running, alice):
    client = Client()
    await asyncio.to_thread(client.force_login, alice)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    comm = communicator(path(running.public_id), headers=[ORIGIN, (b"cookie", cookie)])
    connected, _ = await comm.connect(timeout=WAIT)
    assert connected
    assert (await receive_json(comm))["status"] == "connected"
    await comm.disconnect()


async def test_it_answers_ping_with_pong(running, alice):
    comm = await open_terminal(running, alice)
    await comm.send_json_to({"type": "ping", "t": {"sent": 12.5}})
    assert await receive_json(comm) == {"type": "pong", "t": {"sent": 12.5}}
    await comm.disconnect()


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[1, 2]",
        "null",
        '{"type": "dance"}',
        '{"no": "type"}',
        '{"type": "ack", "bytes": "lots"}',
        '{"type": "ack", "bytes": 1e999}',
        '{"type": "resize", "cols": [120], "rows": {"x": 1}}',
        '{"type": "resize", "cols": NaN, "rows": 40}',
    ],
)
async def test_it_answers_a_bad_message_with_an_error_and_carries_on(running, alice, text):
    comm = await open_terminal(running, alice)
    await comm.send_to(text_data=text)
    error = await receive_json(comm)
    assert error["type"] == "error" and error["code"] == "bad_message", error
    assert error["message"]
    await comm.send_json_to({"type": "ping", "t": 1})
    assert await receive_json(comm) == {"type": "pong", "t": 1}
    await comm.disconnect()


async def test_a_session_stopped_notice_closes_the_terminal_with_4410(running, alice):
    comm = await open_terminal(running, alice)
    await get_channel_layer().group_send(
        terminal_group(running.public_id), {"type": "session.stopped", "status": "suspended"}
    )
    status = await receive_json(comm)
    assert (status["type"], status["status"]) == ("status", "suspended")
    assert await receive_close(comm) == CLOSE_SESSION_STOPPED
    await comm.disconnect()


async def test_the_close_message_ends_the_shell(running, alice):
    comm = await open_terminal(running, alice, terminal_id="doomed")
    await comm.send_json_to({"type": "close"})
    assert (await receive_json(comm))["type"] == "exit"
    assert await receive_close(comm) == CLOSE_NORMAL
    await comm.disconnect()
