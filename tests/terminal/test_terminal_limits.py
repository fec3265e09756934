"""Terminal limits on the real wire: a running daphne, real WebSocket clients (``websockets``, and
a raw socket for the client that never reads), the test PostgreSQL and Redis, the Docker engine.

The logic behind each case is covered through ``WebsocketCommunicator`` in
``test_terminal_consumer.py``; these check that daphne and the network do what the logic expects.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from terminal_app.consumers import (
    CLOSE_FRAME_TOO_BIG,
    CLOSE_RATE_LIMITED,
    CLOSE_TOO_MANY_TERMINALS,
)
from tests.conftest import Daphne, _test_database_url
from tests.terminal.test_terminal_wire import (
    WAIT,
    Term,
    Wire,
    alice_on_the_wire,
    login,
    processes,
    rss_kb,
    terminal,
)

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]

MESSAGE_TOO_BIG = 1009  # autobahn's own close code, for a message past daphne's 1 MiB limit


@pytest.fixture
def wire(daphne_server, sandboxes) -> Wire:
    return alice_on_the_wire(daphne_server)


# --- 1. frames past 64 KiB ----------------------------------------------------------------------


@pytest.mark.parametrize("size", [1_000_000, 1 << 20, 2 << 20])
def test_a_1_mb_frame_closes_the_socket(wire, size):
    """Under daphne's own limit (1 MiB) the consumer closes with 4413 after saying why; past it
    autobahn closes with 1009. Either way the socket closes and the server carries on."""
    with terminal(wire, "big") as term:
        with contextlib.suppress(ConnectionClosed):  # the server may close while it is sent
            term.ws.send(b"x" * size)
        code = term.wait_closed()
        assert code in {CLOSE_FRAME_TOO_BIG, MESSAGE_TOO_BIG}, code
        if code == CLOSE_FRAME_TOO_BIG:
            assert [m["code"] for m in term.messages if m["type"] == "error"] == ["frame_too_big"]
    assert (size <= 1 << 20) == (code == CLOSE_FRAME_TOO_BIG)
    with terminal(wire, "big") as term:
        mark = term.run("echo AFTER$((40+2))")
        term.wait_for(r"AFTER42", since=mark)


# --- 2. terminals per user ------------------------------------------------------------------------


def test_the_17th_terminal_of_a_user_is_refused_with_4403(wire):
    with contextlib.ExitStack() as stack:
        terms = [stack.enter_context(terminal(wire, f"t{n}")) for n in range(16)]
        with connect(wire.url(terminal_id="t16"), origin=wire.origin, proxy=None, open_timeout=WAIT) as ws:
            refused = Term(ws)
            error = refused.wait_message("error")
            assert (error["code"], "16 terminals" in error["message"]) == ("too_many_terminals", True)
            assert refused.wait_closed() == CLOSE_TOO_MANY_TERMINALS
        # The 16 still work.
        mark = terms[-1].run("echo STILL$((40+2))")
        terms[-1].wait_for(r"STILL42", since=mark)
        # Closing one frees its slot for another.
        terms[0].ws.close()
        deadline = time.monotonic() + WAIT
        while True:
            try:
                with terminal(wire, "t16") as late:
                    mark = late.run("echo LATE$((40+2))")
                    late.wait_for(r"LATE42", since=mark)
                break
            except ConnectionClosed:
                # The closed terminal's slot is given back when its disconnect has run. Pause
                # between tries: each is a handshake, and handshakes are rate limited.
                assert time.monotonic() < deadline, "the closed terminal's slot never came back"
                time.sleep(0.5)


# --- 3. a client that acknowledges everything and reads nothing -----------------------------------


def _frame(payload: bytes) -> bytes:
    """One masked client text frame (RFC 6455 5.2)."""
    size = len(payload)
    if size < 126:
        header = bytes([0x81, 0x80 | size])
    elif size < 1 << 16:
        header = bytes([0x81, 0x80 | 126]) + size.to_bytes(2, "big")
    else:
        header = bytes([0x81, 0x80 | 127]) + size.to_bytes(8, "big")
    mask = os.urandom(4)
    return header + mask + bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))


@contextlib.contextmanager
def raw_terminal(wire: Wire, **params: Any) -> Iterator[socket.socket]:
    """A WebSocket on a bare socket with a tiny receive buffer, attached to a terminal: after the
    ``connected`` status it is read no more, so nothing but the server can hold the output."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(WAIT)
    try:
        sock.connect(("127.0.0.1", wire.server.port))
        query = urlencode({"session_id": wire.session_id, "token": wire.token, **params})
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            (
                f"GET /api/vibecode/ws/terminal?{query} HTTP/1.1\r\nHost: 127.0.0.1:{wire.server.port}\r\n"
                f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\nOrigin: {wire.origin}\r\n\r\n"
            ).encode()
        )
        seen = b""
        deadline = time.monotonic() + WAIT
        while b'"connected"' not in seen:
            assert time.monotonic() < deadline, f"no connected status: {seen[:300]!r}"
            chunk = sock.recv(4096)
            assert chunk, f"closed before attaching: {seen[:300]!r}"
            seen += chunk
        assert seen.startswith(b"HTTP/1.1 101"), seen[:100]
        yield sock
    finally:
        sock.close()


def test_a_client_that_acks_hugely_without_reading_keeps_daphne_memory_flat(wire):
    pid = wire.server.process.pid
    # The biggest screen and output that never repeats, MB a second. After 5 s the PTY host takes
    # the stuck attach out of the flow: the flood runs on in the sandbox, and nothing piles up.
    with raw_terminal(wire, cols=1000, rows=500) as sock:
        sock.sendall(_frame(json.dumps({"type": "input", "data": "cat /dev/urandom | base64\r"}).encode()))
        # The flood has started when the sandbox runs it.
        deadline = time.monotonic() + WAIT
        while not any(cmd.startswith("base64") for cmd in processes(wire.container).values()):
            assert time.monotonic() < deadline, "the flood never started"
            time.sleep(0.05)
        before = rss_kb(pid)
        samples = []
        for _ in range(100):  # ~20 s: without a bound, some 30 MB or more pile up in daphne
            # Far more than was ever sent: the server must not take it as room for more.
            sock.sendall(_frame(json.dumps({"type": "ack", "bytes": 10**15}).encode()))
            time.sleep(0.2)
            samples.append(rss_kb(pid))
        print(
            f"\nno-read flood: daphne RSS before {before // 1024} MB, peak {max(samples) // 1024} MB, "
            f"last {samples[-1] // 1024} MB"
        )
        assert max(samples) - before < 16 * 1024
        assert samples[-1] - samples[len(samples) // 2] < 6 * 1024, "memory was still growing"
        # Keystrokes still go through while the output is held: Ctrl-C ends the flood.
        sock.sendall(_frame(json.dumps({"type": "input", "data": "\x03"}).encode()))
        deadline = time.monotonic() + WAIT
        while any(cmd.startswith("base64") for cmd in processes(wire.container).values()):
            assert time.monotonic() < deadline, "Ctrl-C did not reach the shell"
            time.sleep(0.05)


# --- 4. handshake bursts --------------------------------------------------------------------------


@pytest.fixture
def strict_daphne(daphne_env, tmp_path) -> Iterator[Daphne]:
    """A daphne of its own whose handshake rate per user is 5 a day."""
    env = {**daphne_env, "DATABASE_URL": _test_database_url(), "VIBECODE_RATE_TERMINAL_USER": "5/d"}
    server = Daphne(env, log_path=tmp_path / "strict-daphne.log")
    yield server
    server.stop()


def _outcome(url: str, origin: str) -> int:
    """403 for a refused handshake, else the close code after an accept."""
    try:
        with connect(url, origin=origin, proxy=None, open_timeout=WAIT) as ws:
            term = Term(ws)
            return term.wait_closed() or 0
    except InvalidStatus as exc:
        return exc.response.status_code


def test_a_burst_of_handshakes_is_refused_with_4429(wire, strict_daphne):
    token = login(strict_daphne, "alice")
    origin = f"http://127.0.0.1:{strict_daphne.port}"
    # An unknown session: counted, then refused (403) without reaching a sandbox. 11 attempts
    # against a limit of 5 see a refusal even if a counting window ends in the middle.
    url = f"ws://127.0.0.1:{strict_daphne.port}/api/vibecode/ws/terminal?session_id=nosuchsess&token={token}"
    outcomes = [_outcome(url, origin) for _ in range(11)]
    assert set(outcomes) == {403, CLOSE_RATE_LIMITED}, outcomes
    assert outcomes[0] == 403
    # Once refused, the rest of the window is refused too (a new window may start only once).
    first = outcomes.index(CLOSE_RATE_LIMITED)
    assert outcomes[first:].count(403) <= 5, outcomes
