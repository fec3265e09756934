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
from pathlib import Path
from typing import Any

import docker
import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.utils import timezone
from rest_framework_simplejwt.tokens import AccessToken

from core_app.metrics import EXECS
from sessions_app import services
from sessions_app.models import Session, SessionEvent
from sessions_app.runtime.docker import DockerRuntime
from terminal_app import limits
from terminal_app.consumers import (
    CLOSE_FRAME_TOO_BIG,
    CLOSE_NORMAL,
    CLOSE_NOT_RUNNING,
    CLOSE_RATE_LIMITED,
    CLOSE_SESSION_STOPPED,
    CLOSE_TOO_MANY_TERMINALS,
    FRAME_MAX,
    WRITE_BUFFER_BYTES,
)
from terminal_app.notify import terminal_group
from terminal_app.tickets import ticket_issue
from terminal_app.transport import SCOPE_KEY as WRITE_BUFFER
from vibecode_project.asgi import application

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

ORIGIN = (b"origin", b"http://localhost:8000")
WAIT = 20.0  # seconds; a first attach starts the PTY host and a login shell
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
    """Every terminal the consumer asks the runtime for; the real one still opens."""
    calls: list[Any] = []
    real = DockerRuntime.open_terminal

    def spy(self, ref, **kwargs):
        calls.append(kwargs)
        return real(self, ref, **kwargs)

    monkeypatch.setattr(DockerRuntime, "open_terminal", spy)
    return calls


def session_cookie(user) -> tuple[bytes, bytes]:
    """The ``cookie`` header of a browser logged in as ``user`` (a real Django session)."""
    client = Client()
    client.force_login(user)
    return (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())


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


async def test_it_refuses_another_origin_whatever_the_credential(running, alice, ttys_opened):
    evil = [(b"origin", b"https://evil.example")]
    assert await refused(path(running.public_id, token=token_for(alice)), evil)
    ticket = await asyncio.to_thread(ticket_issue, user_id=alice.pk, session_public_id=running.public_id)
    assert await refused(path(running.public_id, ticket=ticket), evil)
    cookie = await asyncio.to_thread(session_cookie, alice)
    assert await refused(path(running.public_id), [*evil, cookie])
    assert ttys_opened == []


async def test_without_origin_a_jwt_or_a_ticket_gets_a_shell(running, alice):
    comm = communicator(path(running.public_id, token=token_for(alice)), headers=[])
    connected, _ = await comm.connect(timeout=WAIT)
    assert connected
    assert (await receive_json(comm))["status"] == "connected"
    await comm.send_json_to({"type": "input", "data": "echo NOORIGIN$((40+2))\r"})
    await receive_text_until(comm, rb"NOORIGIN42")
    await comm.disconnect()

    ticket = await asyncio.to_thread(ticket_issue, user_id=alice.pk, session_public_id=running.public_id)
    comm = communicator(path(running.public_id, ticket=ticket), headers=[])
    connected, _ = await comm.connect(timeout=WAIT)
    assert connected
    assert (await receive_json(comm))["status"] == "connected"
    await comm.disconnect()


async def test_without_origin_the_session_cookie_alone_is_refused(row_session, alice, ttys_opened):
    cookie = await asyncio.to_thread(session_cookie, alice)
    assert await refused(path(row_session.public_id), [cookie])
    assert ttys_opened == []
    events = [e async for e in SessionEvent.objects.filter(action="ws_refused")]
    assert [e.detail["reason"] for e in events] == ["no valid credential"]


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
    cookie = await asyncio.to_thread(session_cookie, alice)
    comm = communicator(path(running.public_id), headers=[ORIGIN, cookie])
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


# --- limits: frame size, terminals per user, handshake rates -----------------------------------


@pytest.mark.parametrize("kind", ["binary", "text"])
async def test_a_frame_over_64_kib_closes_the_socket_with_4413(running, alice, kind):
    comm = await open_terminal(running, alice)
    # Exactly 64 KiB still goes through: a ping padded to the limit is answered.
    head, tail = '{"type": "ping", "t": "', '"}'
    at_limit = head + "x" * (FRAME_MAX - len(head) - len(tail)) + tail
    assert len(at_limit.encode()) == FRAME_MAX
    await comm.send_to(text_data=at_limit)
    assert (await receive_json(comm))["type"] == "pong"
    if kind == "binary":
        await comm.send_to(bytes_data=b"x" * (FRAME_MAX + 1))
    else:
        # Fewer characters than bytes: 3 bytes each in UTF-8, so the byte count decides.
        await comm.send_to(text_data=json.dumps({"type": "input", "data": "€" * 30_000}, ensure_ascii=False))
    error = await receive_json(comm)
    assert (error["type"], error["code"]) == ("error", "frame_too_big")
    assert await receive_close(comm) == CLOSE_FRAME_TOO_BIG
    await comm.disconnect()


async def test_a_user_past_the_terminal_limit_is_refused_with_4403(running, alice, settings):
    settings.VIBECODE_MAX_TERMINALS_PER_USER = 2
    first = await open_terminal(running, alice, terminal_id="one")
    second = await open_terminal(running, alice, terminal_id="two")
    third = communicator(path(running.public_id, token=token_for(alice), terminal_id="three"))
    connected, _ = await third.connect(timeout=WAIT)
    assert connected
    error = await receive_json(third)
    assert (error["type"], error["code"]) == ("error", "too_many_terminals")
    assert "2 terminals" in error["message"]
    assert await receive_close(third) == CLOSE_TOO_MANY_TERMINALS
    await third.disconnect()
    assert await asyncio.to_thread(limits.slots_in_use, user_id=alice.pk) == 2
    # Closing one gives its slot back.
    await first.disconnect()
    assert await asyncio.to_thread(limits.slots_in_use, user_id=alice.pk) == 1
    third = await open_terminal(running, alice, terminal_id="three")
    await third.disconnect()
    await second.disconnect()
    assert await asyncio.to_thread(limits.slots_in_use, user_id=alice.pk) == 0


async def test_a_burst_of_handshakes_from_one_user_is_refused_with_4429(alice, settings):
    settings.VIBECODE_RATE_TERMINAL_USER = "3/m"
    # An unknown session: each handshake is counted, then refused (403) without touching Docker.
    url = path("nosuchsess", token=token_for(alice))
    for _ in range(3):
        assert await refused(url)
    comm = communicator(url)
    connected, _ = await comm.connect(timeout=WAIT)
    assert connected
    error = await receive_json(comm)
    assert (error["type"], error["code"]) == ("error", "rate_limited")
    assert await receive_close(comm) == CLOSE_RATE_LIMITED
    await comm.disconnect()


async def test_a_burst_of_handshakes_from_one_ip_is_refused_with_4429_before_any_credential(alice, settings):
    settings.VIBECODE_RATE_TERMINAL_IP = "3/m"
    for _ in range(3):
        assert await refused(path("nosuchsess", token="not-a-jwt"))
    # The IP is over its rate: even a valid credential is not looked at.
    comm = communicator(path("nosuchsess", token=token_for(alice)))
    connected, _ = await comm.connect(timeout=WAIT)
    assert connected
    assert (await receive_json(comm))["code"] == "rate_limited"
    assert await receive_close(comm) == CLOSE_RATE_LIMITED
    await comm.disconnect()


# --- what a terminal does not do -----------------------------------------------------------------


def _attaches(session: Session) -> int:
    """Attach processes in the sandbox: one per open terminal connection (``ps`` cuts their long
    command lines: read from ``/proc``)."""
    top = docker.from_env().api.top(session.container_name)
    pid = top["Titles"].index("PID")
    count = 0
    for row in top["Processes"]:
        try:
            count += b"\0pty-attach\0" in Path(f"/proc/{row[pid]}/cmdline").read_bytes()
        except OSError:
            continue  # ended meanwhile
    return count


async def test_a_disconnect_is_neither_activity_nor_an_exec(running, alice):
    comm = await open_terminal(running, alice)
    await receive_text_until(comm, rb"\$ ")  # the attach runs: the prompt came through it
    assert await asyncio.to_thread(_attaches, running) == 1
    idle_since = timezone.now() - timedelta(hours=1)
    await Session.objects.filter(pk=running.pk).aupdate(last_activity_at=idle_since)
    execs_before = _execs_total()
    await comm.disconnect()  # returns once the consumer's disconnect has run
    deadline = time.monotonic() + WAIT
    while await asyncio.to_thread(_attaches, running) != 0:
        assert time.monotonic() < deadline, "the attach did not end with its connection"
        await asyncio.sleep(0.1)
    assert (await Session.objects.aget(pk=running.pk)).last_activity_at == idle_since
    assert _execs_total() == execs_before


def _execs_total() -> float:
    samples = [sample for metric in EXECS.collect() for sample in metric.samples]
    return sum(sample.value for sample in samples if sample.name.endswith("_total"))


async def test_a_suspend_closes_the_terminal_through_the_session_stopping_signal(running, alice):
    comm = await open_terminal(running, alice)
    await asyncio.to_thread(services.session_suspend, session=running)
    status = await receive_json(comm)
    assert (status["type"], status["status"]) == ("status", "suspended")
    assert await receive_close(comm) == CLOSE_SESSION_STOPPED
    await comm.disconnect()


async def test_output_waits_while_the_transport_holds_too_much_whatever_the_acks(running, alice):
    """Under daphne the scope carries the transport's buffered bytes (``terminal_app.transport``);
    here the test plays that part. Acks far past what was sent change nothing."""
    held = {"bytes": 0}
    comm = communicator(path(running.public_id, token=token_for(alice)))
    comm.scope[WRITE_BUFFER] = lambda: held["bytes"]
    connected, _ = await comm.connect(timeout=WAIT)
    assert connected
    assert (await receive_json(comm))["status"] == "connected"
    await comm.send_json_to({"type": "input", "data": "echo READY$((1+1))\r"})
    await receive_text_until(comm, rb"READY2")
    held["bytes"] = WRITE_BUFFER_BYTES + 1
    await comm.send_json_to({"type": "input", "data": "echo HELD$((40+2))\r"})
    await comm.send_json_to({"type": "ack", "bytes": 10**15})
    # The echo of the typed line may go out before the hold applies; the shell's answer may not.
    # (A timed-out receive_output would cancel the consumer: receive_nothing only looks.)
    seen = b""
    while not await comm.receive_nothing(timeout=2.0):
        seen += (await comm.receive_output(timeout=WAIT)).get("bytes") or b""
    assert b"HELD42" not in ANSI.sub(b"", seen)
    held["bytes"] = 0
    await receive_text_until(comm, rb"HELD42")
    await comm.disconnect()
