"""The TCP tunnel into a sandbox (issue 14), on the real Docker engine.

Connections go through the Docker API only: the tunnel is a helper process reached by an exec
stream. The tenant attacks it from inside (kills it, stops it, writes garbage into its stdout,
floods it with connections): only their own connections suffer, and the next open works.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time

import docker
import pytest
from rest_framework.test import APIClient

from sessions_app import services
from sessions_app.models import Session
from sessions_app.runtime import tunnel as tunnel_module
from sessions_app.runtime.tunnel import ChannelClosed, ChannelRefused

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.docker]

ENGINE = docker.from_env()
TUNNEL_PATTERN = "^/usr/bin/python3 -I -u -c.* tunnel [0-9]+$"

# An echo server: every connection gets its bytes back; "SINK" first means read all, answer
# with the sha256 of what came.
ECHO_SERVER = r"""
import hashlib, socket, threading
def serve(conn):
    with conn:
        first = conn.recv(4)
        if first == b"SINK":
            digest = hashlib.sha256()
            while True:
                data = conn.recv(1 << 16)
                if not data:
                    break
                digest.update(data)
            conn.sendall(digest.hexdigest().encode())
            return
        data = first
        while data:
            conn.sendall(data)
            data = conn.recv(1 << 16)
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", PORT))
listener.listen(64)
while True:
    conn, _ = listener.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


def tenant(session: Session, script: str, *, detach: bool = False) -> str:
    container = ENGINE.containers.get(session.container_name)
    result = container.exec_run(["sh", "-c", script], user="1000:1000", detach=detach)
    if detach:
        return ""
    assert result.exit_code == 0, result.output
    return result.output.decode(errors="replace")


def wait_for(condition, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def create_session(api: APIClient, name: str) -> Session:
    response = api.post("/api/vibecode/sessions/create", {"name": name}, format="json")
    assert response.status_code == 201, response.content
    return Session.objects.get(public_id=response.json()["session_id"])


def start_echo(session: Session, port: int) -> None:
    source = ECHO_SERVER.replace("PORT", str(port))
    container = ENGINE.containers.get(session.container_name)
    container.exec_run(["python3", "-c", source], user="1000:1000", detach=True)
    wait_for(lambda: listening(session, port), timeout=30, what=f"the echo server on {port}")


def listening(session: Session, port: int) -> bool:
    out = tenant(session, "cat /proc/net/tcp")
    return any(f":{port:04X} 00000000:0000 0A" in line for line in out.splitlines())


def tunnel_pids(session: Session) -> list[int]:
    out = tenant(session, f"pgrep -f '{TUNNEL_PATTERN}' || true")
    return [int(pid) for pid in out.split()]


def roundtrip(session: Session, port: int, data: bytes) -> bytes:
    channel = services.session_tunnel(session=session).open(port)
    try:
        # Sent from a thread, read here: an echo answers while we send.
        sender = threading.Thread(target=lambda: (channel.send(data), channel.shutdown_write()), daemon=True)
        sender.start()
        received = bytearray()
        while chunk := channel.recv(timeout=30):
            received += chunk
        sender.join(30)
        return bytes(received)
    finally:
        channel.close()


@pytest.fixture
def session(alice_api, sandboxes) -> Session:
    session = create_session(alice_api, "tunnel")
    start_echo(session, 7000)
    return session


def test_bytes_go_both_ways_intact_through_the_docker_api(session):
    assert roundtrip(session, 7000, b"hello") == b"hello"
    payload = hashlib.sha256(b"seed").digest() * (20 * 1024 * 1024 // 32)  # 20 MiB
    channel = services.session_tunnel(session=session).open(7000)
    channel.send(b"SINK")
    sender = threading.Thread(target=lambda: (channel.send(payload), channel.shutdown_write()))
    sender.start()
    digest = b""
    while chunk := channel.recv(timeout=60):
        digest += chunk
    sender.join(60)
    channel.close()
    assert digest.decode() == hashlib.sha256(payload).hexdigest()
    # And back: 20 MiB echoed while we send it (both windows in use at once).
    assert roundtrip(session, 7000, payload) == payload


def test_a_port_with_nothing_listening_is_refused_on_first_read(session):
    channel = services.session_tunnel(session=session).open(7999)
    with pytest.raises(ChannelRefused):
        channel.recv(timeout=30)
    channel.close()
    assert roundtrip(session, 7000, b"still fine") == b"still fine"


def test_a_stalled_reader_holds_up_only_its_own_connection(session):
    tunnel = services.session_tunnel(session=session)
    stalled = tunnel.open(7000)
    # Echoed bytes pile up unread: past the window the sandbox side stops reading.
    stopped = threading.Event()

    def flood() -> None:
        try:
            while not stopped.is_set():
                stalled.send(b"x" * 65536, timeout=1)
        except (TimeoutError, ChannelClosed):
            pass

    flooder = threading.Thread(target=flood, daemon=True)
    flooder.start()
    time.sleep(0.5)
    for i in range(20):
        assert roundtrip(session, 7000, f"other {i}".encode()) == f"other {i}".encode()
    stopped.set()
    flooder.join(10)
    stalled.close()


def test_async_channels(session):
    tunnel = services.session_tunnel(session=session)

    async def one(i: int) -> bytes:
        channel = await tunnel.aopen(7000)
        await channel.asend(b"a%d" % i * 1000)
        channel.shutdown_write()
        out = bytearray()
        while chunk := await channel.arecv():
            out += chunk
        await channel.aclose()
        return bytes(out)

    async def many() -> list[bytes]:
        return await asyncio.gather(*(one(i) for i in range(20)))

    results = asyncio.run(many())
    assert results == [b"a%d" % i * 1000 for i in range(20)]


def test_connections_from_the_sandbox_reach_the_accept_handler(session):
    seen: list[str] = []

    def handler(owner, channel):
        seen.append(owner)
        data = channel.recv(timeout=10)
        channel.send(b"egress:" + data)
        channel.shutdown_write()
        channel.recv(timeout=10)

    previous = tunnel_module._accept_handler  # egress_app's, put back after
    tunnel_module.register_accept_handler(handler)
    try:
        assert services.session_tunnel(session=session).wait_ready(30)
        out = tenant(
            session,
            "python3 -c \"import socket; s=socket.create_connection(('127.0.0.1', 3128)); "
            "s.sendall(b'ping'); s.shutdown(1); print(s.recv(100).decode())\"",
        )
    finally:
        tunnel_module.register_accept_handler(previous)
    assert out.strip() == "egress:ping"
    assert seen == [session.public_id]


@pytest.mark.parametrize("attack", ["kill", "stop", "garbage"])
def test_a_tunnel_the_tenant_breaks_is_replaced_and_only_their_connections_fail(attack, session, bob_api):
    other = create_session(bob_api, "bystander")
    start_echo(other, 7000)
    assert roundtrip(other, 7000, b"before") == b"before"
    channel = services.session_tunnel(session=session).open(7000)
    channel.send(b"first")
    got = b""
    while len(got) < 5:  # a byte stream: the echo may come in pieces
        got += channel.recv(timeout=30)
    assert got == b"first"
    pids = tunnel_pids(session)
    assert len(pids) == 1, pids
    if attack == "kill":
        tenant(session, f"kill -KILL {pids[0]}")
    elif attack == "stop":
        tenant(session, f"kill -STOP {pids[0]}")
    else:
        # Frames with a forged window-breaking payload, written straight into its stdout.
        tenant(session, f"head -c 300000 /dev/zero > /proc/{pids[0]}/fd/1")
    with pytest.raises(ChannelClosed):
        while True:
            channel.recv(timeout=30)
    channel.close()
    # Another user's tunnel never noticed; this user's next connection gets a new tunnel.
    assert roundtrip(other, 7000, b"after") == b"after"
    assert roundtrip(session, 7000, b"again") == b"again"
    if attack == "stop":
        wait_for(lambda: pids[0] not in tunnel_pids(session), timeout=30, what="the stopped tunnel killed")
