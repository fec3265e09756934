"""A slow client downloading through a real daphne keeps the server's memory flat (issue 12).

The service-level test (``test_download.py``) shows the helper's bounded queue; this one shows
the last hop: daphne holds at most ``core_app.backpressure.HIGH_WATER`` bytes for a client that
reads slowly, because the response's ``send`` waits for the transport to drain.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import docker
import pytest

from tests.terminal.test_terminal_wire import alice_on_the_wire

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]

ENGINE = docker.from_env()


def rss_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_a_slow_client_through_daphne_keeps_its_memory_flat(daphne_server, sandboxes):
    wire = alice_on_the_wire(daphne_server)
    made = ENGINE.containers.get(wire.container).exec_run(
        ["truncate", "-s", "8G", "/workspace/huge.bin"], user="1000:1000"
    )
    assert made.exit_code == 0, made.output
    pid = daphne_server.process.pid

    # A raw socket with a small receive buffer, read slowly: the kernel's window fills at once,
    # and everything else the sandbox sends would wait in daphne without backpressure.
    client = socket.create_connection(("127.0.0.1", daphne_server.port), timeout=30)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    path = f"/api/vibecode/sessions/{wire.session_id}/files/download?path=huge.bin"
    client.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {wire.token}\r\n\r\n".encode()
    )
    head = client.recv(64 * 1024)
    assert head.startswith(b"HTTP/1.1 200"), head[:300]
    received = len(head)
    time.sleep(1)  # let the stream get going before the baseline
    baseline = peak = rss_of(pid)
    until = time.monotonic() + 10
    while time.monotonic() < until:
        received += len(client.recv(64 * 1024))
        peak = max(peak, rss_of(pid))
        time.sleep(0.05)  # about 1 MB/s at most
    client.close()
    growth = peak - baseline
    assert received > 1 << 20, received  # it did stream
    assert growth < 50 * 1024 * 1024, f"daphne grew {growth / 2**20:.1f} MB for one slow client"

    # The server is fine afterwards, and the workspace too.
    listed = wire.api("GET", f"/sessions/{wire.session_id}/files?path=")
    assert listed.status_code == 200, listed.text
