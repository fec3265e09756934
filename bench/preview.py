"""Previews through the Docker API: what the proxy and the tunnel add to a request.

    .venv/bin/python -m bench.preview [--requests 300] [--download-mb 50]

A small web app (``tests/preview/web_server.py``) runs inside a sandbox. Each figure through the
preview origin (a real daphne, the preview proxy, the session's tunnel) is printed beside the same
thing done inside the sandbox against 127.0.0.1 (the floor: no proxy, no tunnel):

* a small GET on a fresh connection, p50 added (target <= 5 ms);
* a WebSocket text echo, p50 added (target <= 2 ms);
* a 50 MB download, MB/s.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
from wsproto import ConnectionType, WSConnection
from wsproto import events as ws

from bench.common import (
    REPO_ROOT,
    Stats,
    docker_client,
    ensure_image,
    print_header,
    print_row,
    sandbox_image,
    serve_checkout,
)
from bench.django_setup import bench_django

APP = (REPO_ROOT / "tests" / "preview" / "web_server.py").read_text()
PORT = 8000
TARGET_GET_MS = 5.0
TARGET_WS_MS = 2.0

# The floor, measured inside the sandbox: the same requests against 127.0.0.1, standard library.
FLOOR = r"""
import base64, http.client, json, os, socket, struct, sys, time
port, n, mb = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
gets = []
for _ in range(n + 5):
    t = time.perf_counter()
    c = http.client.HTTPConnection("127.0.0.1", port)
    c.request("GET", "/", headers={"Connection": "close"})
    c.getresponse().read()
    c.close()
    gets.append(time.perf_counter() - t)
s = socket.create_connection(("127.0.0.1", port))
key = base64.b64encode(os.urandom(16)).decode()
s.sendall(("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key).encode())
head = b""
while b"\r\n\r\n" not in head:
    head += s.recv(4096)
def frame(text):
    data = text.encode(); mask = os.urandom(4)
    return bytes([0x81, 0x80 | len(data)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))
def read_frame():
    h = b""
    while len(h) < 2:
        h += s.recv(2 - len(h))
    size = h[1] & 0x7F
    data = b""
    while len(data) < size:
        data += s.recv(size - len(data))
    return data
echoes = []
for _ in range(n + 5):
    t = time.perf_counter()
    s.sendall(frame("ping"))
    read_frame()
    echoes.append(time.perf_counter() - t)
t = time.perf_counter()
c = http.client.HTTPConnection("127.0.0.1", port)
c.request("GET", "/big?mb=%d" % mb)
r = c.getresponse()
got = 0
while True:
    chunk = r.read(1 << 18)
    if not chunk:
        break
    got += len(chunk)
elapsed = time.perf_counter() - t
print(json.dumps({"gets": gets[5:], "echoes": echoes[5:], "mb_s": got / 2**20 / elapsed}))
"""


def _floor(container, requests: int, mb: int) -> tuple[Stats, Stats, float]:
    result = container.exec_run(["python3", "-c", FLOOR, str(PORT), str(requests), str(mb)], user="1000:1000")
    if result.exit_code != 0:
        raise SystemExit(f"the in-sandbox floor failed: {result.output[-500:]!r}")
    data = json.loads(result.output.decode().strip().splitlines()[-1])
    return Stats.from_seconds(data["gets"]), Stats.from_seconds(data["echoes"]), float(data["mb_s"])


def _preview_gets(port: int, host: str, requests: int) -> Stats:
    """Fresh connections with http.client, as the floor inside makes them (an httpx client per
    request would time its own set-up: it loads a CA bundle)."""
    samples = []
    for i in range(requests + 5):
        started = time.perf_counter()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", "/", headers={"Host": host, "Connection": "close"})
        response = connection.getresponse()
        body = response.read()
        connection.close()
        elapsed = time.perf_counter() - started
        if response.status != 200:
            raise SystemExit(f"preview GET answered {response.status}: {body[:200]!r}")
        if i >= 5:
            samples.append(elapsed)
    return Stats.from_seconds(samples)


def _preview_echoes(port: int, host: str, requests: int) -> Stats:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = WSConnection(ConnectionType.CLIENT)
    sock.sendall(conn.send(ws.Request(host=host, target="/ws")))

    def next_event(kind: type) -> ws.Event:
        while True:
            for event in conn.events():
                if isinstance(event, kind):
                    return event
                if isinstance(event, (ws.RejectConnection, ws.CloseConnection)):
                    raise SystemExit(f"the preview WebSocket ended: {event!r}")
            data = sock.recv(65536)
            if not data:
                raise SystemExit("the preview WebSocket hung up")
            conn.receive_data(data)

    next_event(ws.AcceptConnection)
    samples = []
    for i in range(requests + 5):
        started = time.perf_counter()
        sock.sendall(conn.send(ws.TextMessage(data="ping")))
        next_event(ws.TextMessage)
        if i >= 5:
            samples.append(time.perf_counter() - started)
    sock.close()
    return Stats.from_seconds(samples)


def _preview_download(port: int, host: str, mb: int) -> float:
    started = time.perf_counter()
    received = 0
    with httpx.stream("GET", f"http://127.0.0.1:{port}/big", params={"mb": mb}, headers={"Host": host}) as r:
        for chunk in r.iter_raw():
            received += len(chunk)
    elapsed = time.perf_counter() - started
    if received != mb * 2**20:
        raise SystemExit(f"the preview download got {received} bytes of {mb * 2**20}")
    return received / 2**20 / elapsed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.preview", description=__doc__)
    parser.add_argument("--requests", type=int, default=300, help="GETs and echoes of each kind")
    parser.add_argument("--download-mb", type=int, default=50, help="size of the download")
    args = parser.parse_args(argv)

    client = docker_client()
    ensure_image(client, sandbox_image())
    with bench_django() as user:
        from rest_framework.test import APIClient

        from preview_app.models import PreviewPort
        from sessions_app.models import Session

        api = APIClient(SERVER_NAME="localhost")
        api.force_authenticate(user)
        created = api.post("/api/vibecode/sessions/create", format="json")
        if created.status_code != 201:
            raise SystemExit(f"create failed: {created.status_code} {created.content[:200]!r}")
        session = Session.objects.get(public_id=created.json()["session_id"])
        # Public: the figures are about the transport, not the hand-off.
        PreviewPort.objects.create(session=session, port=PORT, public=True)
        container = client.containers.get(session.container_name)
        container.exec_run(["python3", "-c", APP, str(PORT)], user="1000:1000", detach=True)
        deadline = time.monotonic() + 30
        while (
            f":{PORT:04X} 00000000:0000 0A"
            not in container.exec_run(["cat", "/proc/net/tcp"]).output.decode()
        ):
            if time.monotonic() > deadline:
                raise SystemExit("the web app in the sandbox never listened")
            time.sleep(0.1)

        log = Path(tempfile.mkdtemp(prefix="vibecode-bench-")) / "daphne-preview.log"
        with serve_checkout(os.environ, log) as (_process, port):
            host = f"{PORT}-{session.public_id}.localhost:{port}"
            floor_get, floor_echo, floor_mb_s = _floor(container, args.requests, args.download_mb)
            get = _preview_gets(port, host, args.requests)
            echo = _preview_echoes(port, host, args.requests)
            mb_s = _preview_download(port, host, args.download_mb)

    print_header("Previews (through daphne, the preview proxy and the tunnel)", with_ratio=True)
    print_row("GET / inside the sandbox (floor)", floor_get)
    print_row("GET / through the preview", get, floor=floor_get)
    print_row("WebSocket echo inside (floor)", floor_echo)
    print_row("WebSocket echo through the preview", echo, floor=floor_echo)
    added_get = get.median - floor_get.median
    added_ws = echo.median - floor_echo.median
    print(f"GET p50 added: {added_get:.2f} ms (target <= {TARGET_GET_MS} ms) "
          f"{'ok' if added_get <= TARGET_GET_MS else 'MISS'}")  # fmt: skip
    print(f"WebSocket echo p50 added: {added_ws:.2f} ms (target <= {TARGET_WS_MS} ms) "
          f"{'ok' if added_ws <= TARGET_WS_MS else 'MISS'}")  # fmt: skip
    print(f"{args.download_mb} MB download: {mb_s:.0f} MB/s through the preview, "
          f"{floor_mb_s:.0f} MB/s inside ({mb_s / floor_mb_s:.2f}x floor)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
