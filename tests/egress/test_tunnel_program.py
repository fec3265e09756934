"""The egress proxy behind the real tunnel: ``sandbox/agent.py`` in tunnel mode, run here on the
host as a plain process (its stdin/stdout are what the Docker API would carry), listening on a
free loopback port in place of the sandbox's 127.0.0.1:3128. Its connections reach the proxy
through the accept handler egress_app registers, exactly as from a sandbox.
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from egress_app import services
from egress_app.models import EgressConnection
from sandbox import AGENT_PROGRAM
from sessions_app.runtime.helper import ProcessStream
from sessions_app.runtime.tunnel import Tunnel
from tests.conftest import free_port

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("egress_policy")]

WAIT = 30.0


class LocalProcess(ProcessStream):
    def __init__(self, argv: list[str]) -> None:
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)

    def write(self, data: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(data)

    def read(self) -> bytes:
        assert self.process.stdout is not None
        try:
            return os.read(self.process.stdout.fileno(), 1 << 20)
        except OSError:
            return b""

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(WAIT)


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def connect(port: int) -> socket.socket:
    """A connection to the tunnel's listener, once it listens."""
    deadline = time.monotonic() + WAIT
    while True:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
            return sock
        except ConnectionRefusedError:
            assert time.monotonic() < deadline, "the tunnel never listened"
            time.sleep(0.05)


def start_tunnel(owner: str) -> tuple[Tunnel, int]:
    port = free_port()
    stream = LocalProcess(["/usr/bin/python3", "-I", "-u", "-c", AGENT_PROGRAM, "tunnel", str(port)])
    return Tunnel(stream, label=f"host/{owner}", owner=owner), port


@pytest.fixture
def tunnels() -> Iterator[list[Tunnel]]:
    made: list[Tunnel] = []
    yield made
    for tunnel in made:
        tunnel.close()


def open_tunnel(tunnels: list[Tunnel], owner: str) -> int:
    tunnel, port = start_tunnel(owner)
    tunnels.append(tunnel)
    return port


def roundtrip(port: int, upstream: int) -> bytes:
    with connect(port) as sock:
        sock.sendall(f"CONNECT upstream.test:{upstream} HTTP/1.1\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 Connection established"), head
        sock.sendall(b"GET /through-the-tunnel HTTP/1.0\r\n\r\n")
        while chunk := sock.recv(65536):
            rest += chunk
        return rest


def test_a_connection_to_the_egress_port_reaches_the_proxy(tunnels, upstream):
    port = open_tunnel(tunnels, "tunnelowner")
    reply = roundtrip(port, upstream)
    assert reply.startswith(b"HTTP/1.0 200") and reply.endswith(b"hello from upstream\n")
    wait_for(lambda: EgressConnection.objects.filter(outcome="ok").exists(), "the audit row")
    row = EgressConnection.objects.get()
    assert (row.session_public_id, row.host, row.bytes_down) == ("tunnelowner", "upstream.test", len(reply))


def test_a_refusal_reaches_the_program_in_one_line(tunnels):
    port = open_tunnel(tunnels, "tunnelowner")
    with connect(port) as sock:
        sock.sendall(b"CONNECT evil.test:443 HTTP/1.1\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 403 Forbidden (host not allowed)\r\n")


def first_replies(socks: list[socket.socket], *, want: int) -> list[bytes]:
    """The first bytes each socket received, waiting (at most WAIT) until ``want`` have some."""
    replies: dict[socket.socket, bytes] = {}
    deadline = time.monotonic() + WAIT
    while len(replies) < want and time.monotonic() < deadline:
        pending = [sock for sock in socks if sock not in replies]
        readable, _, _ = select.select(pending, [], [], 1.0)
        for sock in readable:
            replies[sock] = sock.recv(64)
    return list(replies.values())


def test_a_flood_of_connections_hurts_only_its_own_workspace(tunnels, settings, upstream):
    """200 connections that never send a request: the workspace's cap holds 8 of them, the rest
    get 503 at once, and another workspace's egress works meanwhile."""
    settings.VIBECODE_EGRESS_MAX_CONNECTIONS_PER_WORKSPACE = 8
    settings.VIBECODE_EGRESS_HEAD_TIMEOUT_SECONDS = 120.0  # the held ones stay held
    hostile = open_tunnel(tunnels, "hostileone")
    victim = open_tunnel(tunnels, "bystander1")
    flood = [connect(hostile) for _ in range(200)]
    try:
        wait_for(lambda: services.egress_open_connections(session_public_id="hostileone") == 8, "the cap")
        assert roundtrip(victim, upstream).endswith(b"hello from upstream\n")
        replies = first_replies(flood, want=192)
        busy = b"HTTP/1.1 503 Service Unavailable (too many connections)"
        assert len(replies) == 192 and all(reply.startswith(busy[:64]) for reply in replies)
        assert services.egress_open_connections(session_public_id="hostileone") == 8
    finally:
        for sock in flood:
            sock.close()
    wait_for(lambda: services.egress_open_connections(session_public_id="hostileone") == 0, "the end")
