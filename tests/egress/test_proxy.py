"""The egress proxy over a channel: one end of a socketpair plays the tunnel's channel, the other
the program in the sandbox; upstream is a loopback HTTP server this test starts, allowlisted
explicitly through the resolver seam and ``VIBECODE_EGRESS_ALLOW_ADDRESSES``.

Every wait is for a condition (a reply, an EOF, a row) with a generous timeout, never a sleep.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from prometheus_client import REGISTRY

from egress_app import policy, services
from egress_app.models import EgressConnection
from sessions_app.models import Session
from sessions_app.runtime.tunnel import ChannelClosed
from tests.egress.conftest import REAL_RESOLVE, Upstream

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("egress_policy")]

WAIT = 30.0
SID = "egresstest1"


class SocketChannel:
    """The tunnel's ``Channel`` contract over a socket: recv with a timeout, send, half-close,
    and a close that wakes whoever waits on it (as the real one does)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.closed = False

    def recv(self, max_bytes: int = 65536, timeout: float | None = None) -> bytes:
        if self.closed:
            raise ChannelClosed()
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            raise TimeoutError("no data in time")
        try:
            data = self.sock.recv(max_bytes)
        except OSError:
            raise ChannelClosed() from None
        if not data and self.closed:
            raise ChannelClosed()
        return data

    def send(self, data: bytes, timeout: float | None = None) -> None:
        if self.closed:
            raise ChannelClosed()
        try:
            self.sock.sendall(data)
        except OSError:
            raise ChannelClosed() from None

    def shutdown_write(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


@pytest.fixture
def session(alice) -> Session:
    return Session.objects.create(
        public_id=SID,
        owner=alice,
        name="egress",
        status=Session.Status.RUNNING,
        container_name=f"vibecode-x-{SID}",
        volume_name=f"vibecode-x-{SID}-ws",
        image="vibecode-sandbox:latest",
    )


@contextmanager
def proxied(session_public_id: str = SID) -> Iterator[socket.socket]:
    """A connection to the proxy, as a program in the sandbox sees it; served on a thread like
    the tunnel's accept handler, joined at the end."""
    client, backend = socket.socketpair()
    client.settimeout(WAIT)
    server = threading.Thread(
        target=services.egress_accept,
        kwargs={"session_public_id": session_public_id, "channel": SocketChannel(backend)},
        daemon=True,
    )
    server.start()
    try:
        yield client
    finally:
        client.close()
        server.join(WAIT)
        backend.close()
        assert not server.is_alive(), "the proxy did not finish the connection"


def read_head(sock: socket.socket) -> tuple[str, bytes]:
    """The status line of a reply and whatever followed its head."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"EOF before a reply head: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode(), rest


def read_to_eof(sock: socket.socket, already: bytes = b"") -> bytes:
    data = already
    while chunk := sock.recv(65536):
        data += chunk
    return data


def rows(**filters) -> list[EgressConnection]:
    """The audit rows, once the proxy has written them (it does when the connection ends)."""
    deadline = time.monotonic() + WAIT
    while not (found := list(EgressConnection.objects.filter(**filters))):
        assert time.monotonic() < deadline, f"no audit row with {filters}"
        time.sleep(0.05)
    return found


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_connect_carries_bytes_both_ways(session, upstream):
    ok_before = metric("vibecode_egress_connections_total", outcome="ok")
    up_before = metric("vibecode_egress_bytes_total", direction="up")
    down_before = metric("vibecode_egress_bytes_total", direction="down")
    request = b"POST /echo HTTP/1.0\r\nHost: upstream.test\r\nContent-Length: 11\r\n\r\nhello world"
    with proxied() as sandbox:
        sandbox.sendall(f"CONNECT upstream.test:{upstream} HTTP/1.1\r\nHost: upstream.test\r\n\r\n".encode())
        status, rest = read_head(sandbox)
        assert status == "HTTP/1.1 200 Connection established"
        assert rest == b""
        sandbox.sendall(request)
        reply = read_to_eof(sandbox)
    assert reply.startswith(b"HTTP/1.0 200") and reply.endswith(b"echo:hello world")
    assert Upstream.seen[-1]["body"] == "hello world"
    (row,) = rows(outcome="ok")
    assert (row.session_id, row.session_public_id, row.method) == (session.pk, SID, "CONNECT")
    assert (row.host, row.port, row.address, row.status_code) == ("upstream.test", upstream, "127.0.0.1", 200)
    assert row.bytes_up == len(request) and row.bytes_down == len(reply)
    assert row.duration >= timedelta(0)
    assert metric("vibecode_egress_connections_total", outcome="ok") == ok_before + 1
    assert metric("vibecode_egress_bytes_total", direction="up") == up_before + len(request)
    assert metric("vibecode_egress_bytes_total", direction="down") == down_before + len(reply)


def test_bytes_sent_with_the_connect_head_are_not_lost(session, upstream):
    with proxied() as sandbox:
        sandbox.sendall(
            f"CONNECT upstream.test:{upstream} HTTP/1.1\r\n\r\n".encode()
            + b"GET /early HTTP/1.0\r\nHost: upstream.test\r\n\r\n"
        )
        status, rest = read_head(sandbox)
        assert status == "HTTP/1.1 200 Connection established"
        assert b"hello from upstream" in read_to_eof(sandbox, rest)
    assert Upstream.seen[-1]["path"] == "/early"


def test_a_large_download_streams_through(session, upstream):
    size = 8 * 1024 * 1024
    with proxied() as sandbox:
        sandbox.sendall(f"CONNECT upstream.test:{upstream} HTTP/1.1\r\n\r\n".encode())
        read_head(sandbox)
        sandbox.sendall(f"GET /big?n={size} HTTP/1.0\r\n\r\n".encode())
        status, rest = read_head(sandbox)
        body = read_to_eof(sandbox, rest)
    assert status.startswith("HTTP/1.0 200") and len(body) == size
    (row,) = rows(outcome="ok")
    assert row.bytes_down > size


def test_a_plain_http_request_is_forwarded_with_its_host_from_the_url(session, upstream):
    with proxied() as sandbox:
        sandbox.sendall(
            f"GET http://upstream.test:{upstream}/hello?x=1 HTTP/1.1\r\n"
            "Host: somewhere-else.test\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic eA==\r\n"
            "Accept: */*\r\n\r\n".encode()
        )
        reply = read_to_eof(sandbox)
    assert reply.startswith(b"HTTP/1.0 200") and reply.endswith(b"hello from upstream\n")
    seen = Upstream.seen[-1]
    assert seen["path"] == "/hello?x=1"
    assert seen["host"] == f"upstream.test:{upstream}"
    assert seen["connection"] == "close" and seen["accept"] == "*/*"
    assert "proxy-connection" not in seen and "proxy-authorization" not in seen
    (row,) = rows(outcome="ok")
    assert (row.method, row.status_code) == ("GET", 200)


def test_a_plain_http_post_forwards_its_body(session, upstream):
    with proxied() as sandbox:
        sandbox.sendall(
            f"POST http://upstream.test:{upstream}/echo HTTP/1.1\r\nContent-Length: 5\r\n\r\n".encode()
        )
        sandbox.sendall(b"abcde")
        reply = read_to_eof(sandbox)
    assert reply.endswith(b"echo:abcde")


@pytest.mark.parametrize(
    ("request_head", "reason"),
    [
        (b"CONNECT evil.test:443 HTTP/1.1\r\n\r\n", "host not allowed"),
        (b"CONNECT pypi.org:443 HTTP/1.1\r\n\r\n", "host not allowed"),
        (b"GET http://evil.test/ HTTP/1.1\r\n\r\n", "host not allowed"),
        (b"CONNECT upstream.test:22 HTTP/1.1\r\n\r\n", "port not allowed"),
        (b"CONNECT upstream.test:6379 HTTP/1.1\r\n\r\n", "port not allowed"),
        # Allowed by name, yet at a loopback address nobody listed: DNS rebinding goes nowhere.
        (b"CONNECT rebind.test:443 HTTP/1.1\r\n\r\n", "address refused"),
    ],
)
def test_refusals_answer_403_with_the_reason(session, request_head, reason):
    before = metric("vibecode_egress_connections_total", outcome=f"refused_{reason.split()[0]}")
    with proxied() as sandbox:
        sandbox.sendall(request_head)
        status, rest = read_head(sandbox)
        body = read_to_eof(sandbox, rest)
    assert status == f"HTTP/1.1 403 Forbidden ({reason})"
    assert reason.encode() in body and body.count(b"\n") == 1
    (row,) = rows()
    assert row.outcome == f"refused_{reason.split()[0]}" and row.status_code == 403 and row.reason == reason
    assert row.bytes_up == row.bytes_down == 0 and row.address is None
    assert metric("vibecode_egress_connections_total", outcome=row.outcome) == before + 1


def test_loopback_by_its_real_name_is_refused_without_the_override(session, settings, monkeypatch):
    monkeypatch.setattr(policy, "resolve_host", REAL_RESOLVE)
    settings.VIBECODE_EGRESS_ALLOW = ["localhost"]
    settings.VIBECODE_EGRESS_ALLOW_ADDRESSES = []
    with proxied() as sandbox:
        sandbox.sendall(b"CONNECT localhost:443 HTTP/1.1\r\n\r\n")
        status, _ = read_head(sandbox)
    assert status == "HTTP/1.1 403 Forbidden (address refused)"


def test_egress_off_refuses(session, settings, upstream):
    settings.VIBECODE_EGRESS = "off"
    with proxied() as sandbox:
        sandbox.sendall(f"CONNECT upstream.test:{upstream} HTTP/1.1\r\n\r\n".encode())
        status, _ = read_head(sandbox)
    assert status == "HTTP/1.1 403 Forbidden (egress is off)"


@pytest.mark.parametrize(
    "request_head",
    [
        b"GARBAGE\r\n\r\n",
        b"CONNECT upstream.test HTTP/1.1\r\n\r\n",
        b"CONNECT upstream.test:99999 HTTP/1.1\r\n\r\n",
        b"CONNECT upstream.test:443 HTTP/2.0\r\n\r\n",
        b"GET /relative HTTP/1.1\r\nHost: upstream.test\r\n\r\n",
        b"GET https://upstream.test/ HTTP/1.1\r\n\r\n",
        b"GET http://user@upstream.test/ HTTP/1.1\r\n\r\n",
        b"GET ftp://upstream.test/ HTTP/1.1\r\n\r\n",
        b"GET http://upstream.test:nope/ HTTP/1.1\r\n\r\n",
        b"CONNECT upstream.test:443 HTTP/1.1\r\nno colon here\r\n\r\n",
        b"CONNECT upstream.test:443 HTTP/1.1\r\n folded: header\r\n\r\n",
        b"CONNECT upstream.test:443 HTTP/1.1\r\nX: \xff\xfe\r\n\r\n",
        b"POST http://upstream.test/ HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        b"POST http://upstream.test/ HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"CONNECT upstream.test:443 HTTP/1.1\r\n" + b"X-A: b\r\n" * 101 + b"\r\n",
        b"CONNECT upstream.test:443",  # then EOF: an incomplete head
    ],
)
def test_malformed_requests_answer_400(session, request_head):
    with proxied() as sandbox:
        sandbox.sendall(request_head)
        if not request_head.endswith(b"\r\n\r\n"):
            sandbox.shutdown(socket.SHUT_WR)
        status, _ = read_head(sandbox)
    assert status.startswith("HTTP/1.1 400 Bad Request ("), status
    assert rows()[0].outcome == "bad_request"


def test_chunked_request_bodies_answer_501(session):
    with proxied() as sandbox:
        sandbox.sendall(b"POST http://upstream.test/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        status, _ = read_head(sandbox)
    assert status.startswith("HTTP/1.1 501 ")


def test_an_oversized_head_answers_431(session):
    with proxied() as sandbox:
        sandbox.sendall(b"CONNECT upstream.test:443 HTTP/1.1\r\nX-Big: " + b"a" * (40 * 1024) + b"\r\n\r\n")
        status, _ = read_head(sandbox)
    assert status == "HTTP/1.1 431 Request Header Fields Too Large (request head too large)"


def test_a_head_that_never_ends_times_out(session, settings, upstream):
    """A slowloris client: a head started, then trickled, never finished."""
    settings.VIBECODE_EGRESS_HEAD_TIMEOUT_SECONDS = 1.0
    with proxied() as sandbox:
        sandbox.sendall(f"CONNECT upstream.test:{upstream} HTTP/1.1\r\n".encode())
        sandbox.sendall(b"X-Slow: ")
        status, _ = read_head(sandbox)
    assert status == "HTTP/1.1 408 Request Timeout (request head too slow)"
    assert rows()[0].outcome == "head_timeout"


def test_an_unreachable_upstream_answers_502(session, settings, dns):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    dns["closed.test"] = ["127.0.0.1"]
    settings.VIBECODE_EGRESS_PORTS = [closed_port]
    with proxied() as sandbox:
        sandbox.sendall(f"CONNECT closed.test:{closed_port} HTTP/1.1\r\n\r\n".encode())
        status, _ = read_head(sandbox)
    assert status == "HTTP/1.1 502 Bad Gateway (upstream unreachable)"
    assert rows()[0].outcome == "upstream_error"


def test_an_unresolvable_name_answers_502(session):
    with proxied() as sandbox:
        sandbox.sendall(b"CONNECT closed.test:443 HTTP/1.1\r\n\r\n")
        status, _ = read_head(sandbox)
    assert status == "HTTP/1.1 502 Bad Gateway (host not found)"


def test_an_idle_tunnel_is_closed(session, settings, upstream):
    settings.VIBECODE_EGRESS_IDLE_TIMEOUT_SECONDS = 1.0
    with proxied() as sandbox:
        sandbox.sendall(f"CONNECT upstream.test:{upstream} HTTP/1.1\r\n\r\n".encode())
        status, rest = read_head(sandbox)
        assert status == "HTTP/1.1 200 Connection established"
        # Nothing more is sent either way: the watchdog closes it, the sandbox sees EOF.
        assert read_to_eof(sandbox, rest) == b""
    assert rows()[0].outcome == "idle_timeout"


def test_the_byte_cap_ends_a_connection(session, settings, upstream):
    settings.VIBECODE_EGRESS_MAX_MB_PER_CONNECTION = 1
    with proxied() as sandbox:
        sandbox.sendall(f"CONNECT upstream.test:{upstream} HTTP/1.1\r\n\r\n".encode())
        read_head(sandbox)
        sandbox.sendall(f"GET /big?n={8 * 1024 * 1024} HTTP/1.0\r\n\r\n".encode())
        try:
            received = len(read_to_eof(sandbox))
        except ConnectionResetError:
            received = 0
    assert received < 8 * 1024 * 1024
    (row,) = rows()
    assert row.outcome == "byte_cap" and row.bytes_up + row.bytes_down <= 2 * 1024 * 1024 + 65536


def wait_open(count: int, session_public_id: str) -> None:
    deadline = time.monotonic() + WAIT
    while services.egress_open_connections(session_public_id=session_public_id) != count:
        assert time.monotonic() < deadline, f"never {count} open connections"
        time.sleep(0.05)


def test_past_the_workspace_cap_a_503_and_other_workspaces_are_unaffected(session, settings, upstream):
    settings.VIBECODE_EGRESS_MAX_CONNECTIONS_PER_WORKSPACE = 3
    before = metric("vibecode_egress_connections_total", outcome="busy")
    with proxied() as one, proxied() as two, proxied() as three:
        wait_open(3, SID)  # three heads pending: the cap counts them
        with proxied() as four:
            status, _ = read_head(four)
            assert status == "HTTP/1.1 503 Service Unavailable (too many connections)"
        with proxied("otherworksp") as other:
            other.sendall(f"GET http://upstream.test:{upstream}/ HTTP/1.1\r\n\r\n".encode())
            assert read_to_eof(other).endswith(b"hello from upstream\n")
        for sandbox in (one, two, three):
            sandbox.shutdown(socket.SHUT_WR)  # gone without a request: nothing to record
    wait_open(0, SID)
    assert metric("vibecode_egress_connections_total", outcome="busy") == before + 1
    assert not EgressConnection.objects.filter(session_public_id=SID).exists()


def test_audit_rows_past_their_days_are_pruned(session):
    now = timezone.now()
    for days in (40, 31, 1):
        EgressConnection.objects.create(
            session=session,
            session_public_id=SID,
            host="upstream.test",
            outcome="ok",
            started_at=now - timedelta(days=days),
            duration=timedelta(seconds=1),
        )
    call_command("cleanup_egress", "--dry-run")
    assert EgressConnection.objects.count() == 3
    call_command("cleanup_egress")
    assert [r.started_at.date() for r in EgressConnection.objects.all()] == [(now - timedelta(days=1)).date()]
    assert services.egress_audit_prune() == 0  # a second run finds nothing to do
    session.delete()  # rows outlive their session
    assert EgressConnection.objects.get().session_public_id == SID
