"""The language server WebSocket (docs/lsp-protocol.md) on real sandboxes: who is refused, the
frames both ways, and what a hostile server (the user's own program) can do: only its own
connection ends, with a close code the editor recovers from.

The misbehaving server is ``lsp_fixture_server.py``, written into the workspace and run by the
real supervisor in the sandbox; the real pylsp is covered at the end.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.test import override_settings

from lsp_app import services as bridges
from lsp_app.consumers import (
    CLOSE_BAD_MESSAGE,
    CLOSE_FRAME_TOO_BIG,
    CLOSE_IDLE,
    CLOSE_NOT_RUNNING,
    CLOSE_REPLACED,
    CLOSE_SERVER_ENDED,
    CLOSE_SESSION_STOPPED,
)
from lsp_app.servers import language_server_get
from sessions_app import services
from sessions_app.models import Session
from terminal_app.tickets import ticket_issue
from tests.terminal.test_terminal_consumer import ORIGIN, _row_only, session_cookie, token_for
from vibecode_project.asgi import application
from workspace_app.services import workspace_exec, workspace_write

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

WAIT = 30.0
FIXTURE_SOURCE = (Path(__file__).parent / "lsp_fixture_server.py").read_text()
SERVERS = {
    "python": {"label": "Python", "extensions": ["py"], "argv": ["/usr/bin/pylsp"]},
    "fixture": {
        "label": "Fixture",
        "extensions": ["fx"],
        "argv": ["/usr/bin/python3", "/workspace/fixture_lsp.py"],
    },
}


@pytest.fixture(autouse=True)
def _servers():
    with override_settings(VIBECODE_LSP_SERVERS=SERVERS):
        yield


@pytest.fixture
def running(alice, sandboxes) -> Session:
    session = services.session_create(user=alice, name="lsp")
    workspace_write(session=session, path="fixture_lsp.py", content=FIXTURE_SOURCE.encode())
    return session


def url(session_id: str, language: str = "fixture", **params: str) -> str:
    query = "&".join(
        f"{k}={v}" for k, v in {"session_id": session_id, "language": language, **params}.items()
    )
    return f"/api/vibecode/ws/lsp?{query}"


async def refused(path: str, headers: list[tuple[bytes, bytes]] | None = None) -> bool:
    comm = WebsocketCommunicator(application, path, headers=[ORIGIN] if headers is None else headers)
    connected, _ = await comm.connect(timeout=WAIT)
    if connected:
        await comm.disconnect()
    return not connected


async def next_frame(comm: WebsocketCommunicator, timeout: float = WAIT) -> dict[str, Any]:
    message = await comm.receive_output(timeout=timeout)
    if message["type"] == "websocket.close":
        raise AssertionError(f"closed with {message.get('code')} while waiting for a frame")
    return json.loads(message["text"])


async def close_code(comm: WebsocketCommunicator, timeout: float = WAIT) -> tuple[int, list[dict[str, Any]]]:
    """Frames up to the close, and its code."""
    seen = []
    deadline = time.monotonic() + timeout
    while True:
        message = await comm.receive_output(timeout=max(0.01, deadline - time.monotonic()))
        if message["type"] == "websocket.close":
            return int(message.get("code", 1000)), seen
        seen.append(json.loads(message["text"]))


async def connect(session: Session, user, language: str = "fixture") -> WebsocketCommunicator:
    comm = WebsocketCommunicator(application, url(session.public_id, language, token=token_for(user)))
    connected, _ = await comm.connect(timeout=WAIT)
    assert connected
    assert await next_frame(comm) == {"vibecode": "starting"}
    assert await next_frame(comm) == {"vibecode": "ready"}
    return comm


async def call(comm: WebsocketCommunicator, ident: int, method: str, params: Any = None) -> None:
    await comm.send_to(
        text_data=json.dumps({"jsonrpc": "2.0", "id": ident, "method": method, "params": params})
    )


async def reply(comm: WebsocketCommunicator, ident: int, timeout: float = WAIT) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        frame = await next_frame(comm, max(0.01, deadline - time.monotonic()))
        if frame.get("id") == ident:
            return frame


async def server_processes(session: Session, pattern: str) -> list[str]:
    result = await asyncio.to_thread(
        workspace_exec, session=session, argv=["pgrep", "-af", pattern], timeout=10
    )
    # Not pgrep itself, nor the supervisor, whose arguments name the server after its " -- ".
    lines = result.stdout.decode().splitlines()
    return [line for line in lines if "pgrep" not in line and " -- " not in line]


# --- refusals ---------------------------------------------------------------------------------


async def test_it_refuses_without_a_credential_or_with_a_cookie_and_no_origin(alice):
    session = await asyncio.to_thread(_row_only, alice, Session.Status.RUNNING)
    assert await refused(url(session.public_id))
    cookie = await asyncio.to_thread(session_cookie, alice)
    assert await refused(url(session.public_id), headers=[cookie])  # a cookie needs an Origin


async def test_it_refuses_another_users_session_and_an_unknown_language(alice, bob):
    session = await asyncio.to_thread(_row_only, alice, Session.Status.RUNNING)
    assert await refused(url(session.public_id, token=token_for(bob)))
    assert await refused(url(session.public_id, "cobol", token=token_for(alice)))
    assert await refused(url(session.public_id, "../etc", token=token_for(alice)))


async def test_a_stopped_session_is_told_so(alice):
    session = await asyncio.to_thread(_row_only, alice, Session.Status.SUSPENDED)
    comm = WebsocketCommunicator(application, url(session.public_id, token=token_for(alice)))
    assert (await comm.connect(timeout=WAIT))[0]
    code, frames = await close_code(comm)
    assert code == CLOSE_NOT_RUNNING
    assert frames[-1]["vibecode"] == "error" and frames[-1]["code"] == "not_running"


# --- the bridge -------------------------------------------------------------------------------


async def test_messages_cross_both_ways_with_a_ticket_or_the_pages_cookie(running, alice):
    ticket = await asyncio.to_thread(ticket_issue, user_id=alice.pk, session_public_id=running.public_id)
    comm = WebsocketCommunicator(application, url(running.public_id, ticket=ticket))
    assert (await comm.connect(timeout=WAIT))[0]
    assert [await next_frame(comm), await next_frame(comm)] == [
        {"vibecode": "starting"},
        {"vibecode": "ready"},
    ]
    await call(comm, 1, "echo", {"text": "héllo ✓", "n": [1, 2]})
    assert (await reply(comm, 1))["result"] == {"text": "héllo ✓", "n": [1, 2]}
    await comm.disconnect()

    cookie = await asyncio.to_thread(session_cookie, alice)
    comm = WebsocketCommunicator(application, url(running.public_id), headers=[ORIGIN, cookie])
    assert (await comm.connect(timeout=WAIT))[0]
    await next_frame(comm), await next_frame(comm)
    await call(comm, 2, "echo", "again")
    assert (await reply(comm, 2))["result"] == "again"
    await comm.disconnect()


async def test_closing_the_socket_stops_the_server(running, alice):
    comm = await connect(running, alice)
    await call(comm, 1, "echo", 1)
    await reply(comm, 1)
    assert await server_processes(running, "fixture_lsp.py")
    await comm.disconnect()
    deadline = time.monotonic() + 10
    while await server_processes(running, "fixture_lsp.py"):
        assert time.monotonic() < deadline, "the server outlived its WebSocket"
        await asyncio.sleep(0.2)


async def test_a_second_connection_replaces_the_first(running, alice):
    first = await connect(running, alice)
    await call(first, 1, "echo", 1)
    await reply(first, 1)
    second = await connect(running, alice)
    code, frames = await close_code(first)
    assert code == CLOSE_REPLACED and frames[-1]["code"] == "replaced"
    await call(second, 2, "echo", 2)
    assert (await reply(second, 2))["result"] == 2
    assert len(await server_processes(running, "fixture_lsp.py")) == 1  # one per language
    await second.disconnect()


async def test_bad_frames_from_the_client_close_with_4400_or_4413(running, alice):
    comm = await connect(running, alice)
    await comm.send_to(text_data="[1, 2]")
    assert (await close_code(comm))[0] == CLOSE_BAD_MESSAGE
    comm = await connect(running, alice)
    await comm.send_to(bytes_data=b"\x00\x01")
    assert (await close_code(comm))[0] == CLOSE_BAD_MESSAGE
    comm = await connect(running, alice)
    big = json.dumps({"jsonrpc": "2.0", "method": "x", "params": "y" * (1024 * 1024)})
    await comm.send_to(text_data=big)
    assert (await close_code(comm))[0] == CLOSE_FRAME_TOO_BIG


async def test_an_idle_connection_is_closed_and_its_server_stopped(running, alice):
    with override_settings(VIBECODE_LSP_IDLE_SECONDS=5):
        comm = await connect(running, alice)
        code, frames = await close_code(comm, timeout=20)
    assert code == CLOSE_IDLE and frames[-1]["code"] == "idle"
    deadline = time.monotonic() + 10
    while await server_processes(running, "fixture_lsp.py"):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)


async def test_suspending_the_session_closes_the_connection(running, alice):
    comm = await connect(running, alice)
    await asyncio.to_thread(services.session_suspend, session=running)
    code, _frames = await close_code(comm)
    assert code == CLOSE_SESSION_STOPPED


# --- a hostile server: only its own connection ends --------------------------------------------


@pytest.mark.parametrize(
    ("method", "reason"),
    [
        # Broken framing is caught by the supervisor, which kills the server and ends the stream
        # without a word; a well-framed message that is no JSON object, by the backend.
        ("garbage", {"server_closed", "server_broken"}),
        ("huge", {"server_closed", "server_broken"}),
        ("array", {"server_broken"}),
        ("exit-now", {"server_exited"}),
    ],
)
async def test_a_misbehaving_server_ends_only_its_own_connection(
    running, alice, bob, sandboxes, method, reason
):
    neighbour = await asyncio.to_thread(services.session_create, user=bob, name="neighbour")
    await asyncio.to_thread(
        workspace_write, session=neighbour, path="fixture_lsp.py", content=FIXTURE_SOURCE.encode()
    )
    theirs = await connect(neighbour, bob)
    comm = await connect(running, alice)
    await call(comm, 1, method)
    code, frames = await close_code(comm)
    assert code == CLOSE_SERVER_ENDED and frames[-1]["code"] in reason
    await call(theirs, 7, "echo", "still here")
    assert (await reply(theirs, 7))["result"] == "still here"
    await theirs.disconnect()
    # And the editor's reconnect gets a working server.
    comm = await connect(running, alice)
    await call(comm, 2, "echo", "back")
    assert (await reply(comm, 2))["result"] == "back"
    await comm.disconnect()


async def test_killing_the_server_from_the_terminal_closes_with_4502(running, alice):
    comm = await connect(running, alice)
    await call(comm, 1, "echo", 1)
    await reply(comm, 1)
    await asyncio.to_thread(
        workspace_exec, session=running, argv=["pkill", "-9", "-f", "fixture_lsp.py"], timeout=10
    )
    code, frames = await close_code(comm)
    assert code == CLOSE_SERVER_ENDED and frames[-1]["code"] in {"server_exited", "server_closed"}


async def test_a_flooding_server_is_held_to_the_read_budget(running, alice):
    """Nobody reads the bridge: the server's output stops at the budget (it blocks on its own
    writes in the sandbox), then everything arrives in order once the client reads."""
    server = language_server_get("fixture")
    assert server is not None
    bridge = await bridges.language_server_open(session=running, server=server)
    try:
        assert bridge.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "flood", "params": 40}))
        await asyncio.sleep(5)
        assert bridge._held <= bridges.READ_BUDGET_BYTES + 64 * 1024
        seen = 0
        while seen < 40 * 17:
            event = await asyncio.wait_for(bridge.next_event(), WAIT)
            assert isinstance(event, str), event
            assert json.loads(event)["params"]["n"] == seen
            bridge.release(len(event))
            seen += 1
    finally:
        bridge.close()


async def test_a_server_that_stops_reading_ends_its_connection(running, alice):
    comm = await connect(running, alice)
    await call(comm, 1, "stop-reading")
    assert (await reply(comm, 1))["result"] == "stopped"
    payload = "z" * 900_000
    code = None
    for n in range(40):  # ~36 MB against a pipe nobody drains
        try:
            await comm.send_to(
                text_data=json.dumps({"jsonrpc": "2.0", "method": "note", "params": payload + str(n)})
            )
        except Exception:
            break
        output = await comm.receive_nothing(timeout=0.05)
        if not output:
            code = (await close_code(comm))[0]
            break
    if code is None:
        code = (await close_code(comm, timeout=WAIT))[0]
    assert code == CLOSE_SERVER_ENDED


# --- the real Python server --------------------------------------------------------------------


async def test_pylsp_completes_os_path(running, alice):
    comm = await connect(running, alice, "python")
    init = {"processId": None, "rootUri": "file:///workspace", "capabilities": {}}
    await call(comm, 1, "initialize", init)
    assert "capabilities" in (await reply(comm, 1, timeout=60))["result"]
    await comm.send_to(text_data=json.dumps({"jsonrpc": "2.0", "method": "initialized", "params": {}}))
    doc = {
        "uri": "file:///workspace/main.py",
        "languageId": "python",
        "version": 1,
        "text": "import os\nos.pa",
    }
    await comm.send_to(
        text_data=json.dumps(
            {"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": doc}}
        )
    )
    position = {"textDocument": {"uri": doc["uri"]}, "position": {"line": 1, "character": 5}}
    await call(comm, 2, "textDocument/completion", position)
    result = (await reply(comm, 2, timeout=60))["result"]
    items = result["items"] if isinstance(result, dict) else result
    assert "path" in {item["label"] for item in items}
    await comm.disconnect()


async def test_pkill_of_the_server_by_name_is_a_crash_not_a_takeover(running, alice):
    """``pkill -f`` matches the supervisor's command line too (it names the server): its SIGTERM
    must end the connection as a crash (4502), which the editor restarts, not as 4001."""
    comm = await connect(running, alice)
    await call(comm, 1, "echo", 1)
    await reply(comm, 1)
    await asyncio.to_thread(
        workspace_exec, session=running, argv=["pkill", "-f", "fixture_lsp.py"], timeout=10
    )
    code, frames = await close_code(comm)
    assert code == CLOSE_SERVER_ENDED and frames[-1]["code"] in {"server_exited", "server_closed"}


async def test_pkill_f_pylsp_ends_the_python_server_and_nothing_else(running, alice):
    """The issue's "kill the server from the terminal": ``pkill -f pylsp`` hits the server and its
    supervisor, never the workspace's helper (whose command line is the agent's source): the
    exec that runs it answers, and the connection ends as a crash."""
    comm = await connect(running, alice, "python")
    await call(comm, 1, "initialize", {"processId": None, "rootUri": "file:///workspace", "capabilities": {}})
    await reply(comm, 1, timeout=60)
    result = await asyncio.to_thread(
        workspace_exec, session=running, argv=["pkill", "-f", "pylsp"], timeout=10
    )
    assert result.exit_code == 0
    code, frames = await close_code(comm)
    assert code == CLOSE_SERVER_ENDED and frames[-1]["code"] in {"server_exited", "server_closed"}
