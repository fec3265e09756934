"""A streaming run's output through a real daphne: a program flooding its output, read by a client
that barely reads, keeps the server's memory flat (the helper's ring drops what nobody read, and
daphne's send waits for the client: ``core_app.backpressure``), and the session stays usable."""

from __future__ import annotations

import socket
import time

import httpx
import pytest
from django.db import connection

from tests.terminal.test_terminal_wire import alice_on_the_wire
from tests.workspace.test_download_wire import rss_of

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]


def test_a_flood_read_by_a_slow_client_keeps_daphne_flat_and_the_session_usable(daphne_server, sandboxes):
    wire = alice_on_the_wire(daphne_server)
    headers = {"Authorization": f"Bearer {wire.token}"}
    runs = f"{daphne_server.url}/api/vibecode/sessions/{wire.session_id}/runs"
    started = httpx.post(runs, json={"argv": ["yes", "a flood of output"]}, headers=headers, timeout=60)
    assert started.status_code == 201, started.text
    run_id = started.json()["run_id"]
    pid = daphne_server.process.pid

    client = socket.create_connection(("127.0.0.1", daphne_server.port), timeout=30)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    path = f"/api/vibecode/sessions/{wire.session_id}/runs/{run_id}/events"
    client.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
        f"Authorization: Bearer {wire.token}\r\n\r\n".encode()
    )
    head = client.recv(64 * 1024)
    assert head.startswith(b"HTTP/1.1 200"), head[:300]
    assert b"text/event-stream" in head.split(b"\r\n\r\n", 1)[0]
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

    # The flood is bounded in the sandbox too, and the rest of the session answers normally.
    info = httpx.get(f"{runs}/{run_id}", headers=headers, timeout=60).json()
    assert info["running"] is True and info["end_offset"] - info["first_offset"] <= 1 << 20
    listed = wire.api("GET", f"/sessions/{wire.session_id}/files?path=")
    assert listed.status_code == 200, listed.text
    stopped = httpx.post(f"{runs}/{run_id}/stop", headers=headers, timeout=60)
    assert stopped.status_code == 200 and stopped.json()["stopped"] is True, stopped.text


def database_connections() -> int:
    """Connections to the test database other than this test's own (daphne's, here)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return int(cursor.fetchone()[0])


def test_open_event_streams_hold_no_database_connection(daphne_server, sandboxes):
    wire = alice_on_the_wire(daphne_server)
    runs = f"{daphne_server.url}/api/vibecode/sessions/{wire.session_id}/runs"
    headers = {"Authorization": f"Bearer {wire.token}"}
    started = httpx.post(runs, json={"argv": ["sleep", "120"]}, headers=headers, timeout=60)
    assert started.status_code == 201, started.text
    path = f"/api/vibecode/sessions/{wire.session_id}/runs/{started.json()['run_id']}/events"
    baseline = database_connections()

    streams = []
    try:
        for _ in range(4):
            client = socket.create_connection(("127.0.0.1", daphne_server.port), timeout=30)
            client.sendall(
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
                f"Authorization: Bearer {wire.token}\r\n\r\n".encode()
            )
            assert client.recv(64 * 1024).startswith(b"HTTP/1.1 200")
            streams.append(client)
        time.sleep(1)
        # Four streams open for as long as the run lasts, and not one database connection held.
        assert database_connections() <= baseline
        # The server still answers everyone.
        assert wire.api("GET", f"/sessions/{wire.session_id}/files?path=").status_code == 200
    finally:
        for client in streams:
            client.close()
        httpx.post(f"{runs}/{started.json()['run_id']}/stop", headers=headers, timeout=60)
