"""The language server WebSocket on the real wire: a real client (``websockets``) against a
running daphne, with the real pylsp in a real sandbox, and a flooding server against a client
that reads nothing. The logic behind each case is covered by ``test_lsp_consumer.py``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from tests.conftest import Daphne
from tests.lsp.test_lsp_consumer import FIXTURE_SOURCE, SERVERS
from tests.terminal.test_terminal_wire import Wire, alice_on_the_wire

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]

WAIT = 60.0


@pytest.fixture(scope="module")
def lsp_daphne(daphne_env, tmp_path_factory) -> Iterator[Daphne]:
    """A daphne whose language table also has the misbehaving fixture server."""
    env = {**daphne_env, "VIBECODE_LSP_SERVERS": json.dumps(SERVERS)}
    server = Daphne(env, log_path=tmp_path_factory.mktemp("lsp-daphne") / "daphne.log")
    yield server
    server.stop()


@pytest.fixture
def wire(lsp_daphne, sandboxes) -> Wire:
    wire = alice_on_the_wire(lsp_daphne)
    response = httpx.put(
        f"{lsp_daphne.url}/api/vibecode/sessions/{wire.session_id}/files/content",
        json={"path": "fixture_lsp.py", "content": FIXTURE_SOURCE},
        headers={"Authorization": f"Bearer {wire.token}"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return wire


def lsp_url(wire: Wire, language: str) -> str:
    return (
        f"ws://127.0.0.1:{wire.server.port}/api/vibecode/ws/lsp"
        f"?session_id={wire.session_id}&language={language}&token={wire.token}"
    )


def open_lsp(wire: Wire, language: str) -> ClientConnection:
    ws = connect(lsp_url(wire, language), origin=wire.origin, open_timeout=WAIT, max_size=2**21)
    assert json.loads(ws.recv(timeout=WAIT)) == {"vibecode": "starting"}
    assert json.loads(ws.recv(timeout=WAIT)) == {"vibecode": "ready"}
    return ws


def request(ws: ClientConnection, ident: int, method: str, params: Any) -> Any:
    ws.send(json.dumps({"jsonrpc": "2.0", "id": ident, "method": method, "params": params}))
    deadline = time.monotonic() + WAIT
    while True:
        message = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        if message.get("id") == ident and "method" not in message:
            return message["result"]


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_pylsp_completes_and_reports_a_syntax_error_over_the_wire(wire):
    ws = open_lsp(wire, "python")
    assert "capabilities" in request(
        ws, 1, "initialize", {"processId": None, "rootUri": "file:///workspace", "capabilities": {}}
    )
    ws.send(json.dumps({"jsonrpc": "2.0", "method": "initialized", "params": {}}))
    doc = {"uri": "file:///workspace/main.py", "languageId": "python", "version": 1, "text": "def f(:\n"}
    ws.send(json.dumps({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": doc}}))
    deadline = time.monotonic() + WAIT
    while True:
        message = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        if message.get("method") == "textDocument/publishDiagnostics" and message["params"]["diagnostics"]:
            break
    assert message["params"]["uri"] == doc["uri"]
    ws.close()


def test_a_page_of_another_origin_is_refused(wire):
    with pytest.raises(InvalidStatus) as refused:
        connect(lsp_url(wire, "python"), origin=Origin("http://evil.example"), open_timeout=WAIT)
    assert refused.value.response.status_code == 403


def test_a_client_that_reads_nothing_keeps_daphne_flat_while_its_server_floods(wire):
    ws = open_lsp(wire, "fixture")
    before = rss_kb(wire.server.process.pid)
    ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "flood", "params": 80}))  # ~80 MB
    time.sleep(10)  # nothing read meanwhile
    grown_mb = (rss_kb(wire.server.process.pid) - before) / 1024
    assert grown_mb < 40, f"daphne grew {grown_mb:.0f} MB for a client that reads nothing"
    # Then everything arrives, in order.
    seen = 0
    while seen < 80 * 17:
        message = json.loads(ws.recv(timeout=WAIT))
        assert message["params"]["n"] == seen
        seen += 1
    ws.close()


def test_the_connection_ends_with_4502_when_the_server_is_killed(wire):
    ws = open_lsp(wire, "fixture")
    request(ws, 1, "echo", 1)
    httpx.post(
        f"{wire.server.url}/api/vibecode/sessions/{wire.session_id}/exec",
        json={"command": "pkill -9 -f fixture_lsp.py"},
        headers={"Authorization": f"Bearer {wire.token}"},
        timeout=60,
    )
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=WAIT)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4502
