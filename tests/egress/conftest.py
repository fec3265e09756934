"""Shared by the egress tests: a loopback HTTP server as the upstream, a resolver we control,
and a policy that allowlists that server explicitly (and nothing else on loopback)."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from egress_app import policy, services
from egress_app.policy import EgressUnresolvable
from sessions_app.runtime import tunnel

# The real resolver, before any test replaces it.
REAL_RESOLVE = policy.resolve_host


class Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    seen: list[dict[str, str]] = []

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        Upstream.seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
        if self.path.startswith("/big"):
            size = int(self.path.split("=", 1)[1])
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            chunk = b"x" * 65536
            sent = 0
            while sent < size:
                self.wfile.write(chunk[: size - sent])
                sent += min(len(chunk), size - sent)
            return
        body = b"hello from upstream\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Upstream.seen.append({"path": self.path, "body": body.decode()})
        reply = b"echo:" + body
        self.send_response(200)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)


@pytest.fixture(scope="module")
def upstream() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def dns(monkeypatch) -> dict[str, list[str]]:
    table: dict[str, list[str]] = {}

    def resolve(host: str, port: int):
        if host not in table:
            raise EgressUnresolvable(f"{host} could not be resolved.")
        return [ipaddress.ip_address(a) for a in table[host]]

    monkeypatch.setattr(policy, "resolve_host", resolve)
    return table


@pytest.fixture
def egress_policy(settings, upstream, dns) -> None:
    """upstream.test is the loopback server, allowlisted explicitly; rebind.test is allowlisted
    too but its loopback address is not."""
    dns["upstream.test"] = ["127.0.0.1"]
    dns["rebind.test"] = ["127.0.0.2"]
    settings.VIBECODE_EGRESS = "allowlist"
    settings.VIBECODE_EGRESS_ALLOW = ["upstream.test", "rebind.test", "closed.test"]
    settings.VIBECODE_EGRESS_PORTS = [443, 80, upstream]
    settings.VIBECODE_EGRESS_ALLOW_ADDRESSES = [ipaddress.ip_network("127.0.0.1/32")]
    settings.VIBECODE_EGRESS_HEAD_TIMEOUT_SECONDS = 20.0
    settings.VIBECODE_EGRESS_IDLE_TIMEOUT_SECONDS = 120.0
    settings.VIBECODE_EGRESS_MAX_MB_PER_CONNECTION = 0
    Upstream.seen = []


@pytest.fixture(autouse=True)
def _egress_handler() -> None:
    """The accept handler egress_app registers at start-up (a test elsewhere may have swapped
    it for one of its own)."""
    tunnel.register_accept_handler(services.egress_tunnel_handler)
