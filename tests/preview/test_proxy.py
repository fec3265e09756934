"""The preview proxy on the real wire (issue 14): a live daphne, a real sandbox, the tunnel.

Requests go to daphne on loopback with the preview origin's Host header (Chromium resolves
``*.localhost`` by itself; the browser tests use real names). A small web app
(``web_server.py``) runs inside the sandbox on 127.0.0.1; nothing connects to a container IP.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from pathlib import Path

import docker
import httpx
import pytest
from wsproto import ConnectionType, WSConnection
from wsproto import events as ws

from preview_app import services as previews
from sessions_app.models import Session

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.docker]

ENGINE = docker.from_env()
APP = Path(__file__).with_name("web_server.py").read_text()
PORT = 8000


def start_app(session: Session, port: int = PORT) -> None:
    container = ENGINE.containers.get(session.container_name)
    container.exec_run(["python3", "-c", APP, str(port)], user="1000:1000", detach=True)
    deadline = time.monotonic() + 30
    while f":{port:04X} 00000000:0000 0A" not in container.exec_run(["cat", "/proc/net/tcp"]).output.decode():
        assert time.monotonic() < deadline, "the web app never listened"
        time.sleep(0.1)


class Preview:
    """An HTTP client of one preview origin, through the live daphne."""

    def __init__(self, daphne, session: Session, port: int = PORT) -> None:
        self.daphne, self.session, self.port = daphne, session, port
        self.host = f"{port}-{session.public_id}.localhost:{daphne.port}"
        self.client = httpx.Client(base_url=daphne.url, headers={"Host": self.host}, timeout=60)

    def get(self, path: str, **kwargs) -> httpx.Response:
        return self.client.get(path, **kwargs)

    def sign_in(self, user) -> None:
        """The owner's hand-off: a one-time token redeemed on the preview origin for a cookie."""
        token = previews.create_handoff(user, self.session, self.port)
        response = self.get(previews.HANDOFF_PATH, params={"token": token, "next": "/"})
        assert response.status_code == 302, self.daphne.log()[-4000:]
        cookie = response.headers["set-cookie"]
        assert cookie.startswith(previews.PREVIEW_COOKIE + "=")
        assert "HttpOnly" in cookie and "Domain" not in cookie
        # httpx keeps the cookie for the address it connected to; keep exactly one, by name.
        self.cookie = cookie.split(";")[0].split("=", 1)[1]
        self.client.cookies.clear()
        self.client.cookies.set(previews.PREVIEW_COOKIE, self.cookie)


def eventually(condition, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


@pytest.fixture
def session(alice_api, sandboxes) -> Session:
    response = alice_api.post("/api/vibecode/sessions/create", {"name": "preview"}, format="json")
    assert response.status_code == 201, response.content
    session = Session.objects.get(public_id=response.json()["session_id"])
    start_app(session)
    return session


def test_the_owner_gets_in_through_the_handoff_and_a_stranger_does_not(daphne_server, session, alice):
    preview = Preview(daphne_server, session)
    anonymous = preview.get("/")
    assert anonymous.status_code == 302
    assert f"/sessions/{session.public_id}/preview/{PORT}/" in anonymous.headers["location"]
    preview.sign_in(alice)
    page = preview.get("/")
    assert page.status_code == 200, page.text
    assert "served from the sandbox" in page.text
    # A hand-off token works once.
    token = previews.create_handoff(alice, session, PORT)
    assert preview.get(previews.HANDOFF_PATH, params={"token": token}).status_code == 302
    assert preview.get(previews.HANDOFF_PATH, params={"token": token}).status_code == 403
    # The cookie is for this port only: the next port's origin asks again.
    next_port = Preview(daphne_server, session, PORT + 1)
    assert next_port.get("/", cookies={previews.PREVIEW_COOKIE: preview.cookie}).status_code == 302


def test_the_program_never_sees_vibecodes_cookies(daphne_server, session, alice):
    preview = Preview(daphne_server, session)
    preview.sign_in(alice)
    preview.client.cookies.set("sessionid", "app-session")
    preview.client.cookies.set("csrftoken", "app-csrf")
    preview.client.cookies.set("mine", "kept")
    headers = preview.get("/headers").json()
    assert headers.get("cookie") == "mine=kept"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["host"] == preview.host


def test_a_public_port_is_open_to_anyone_and_private_again(daphne_server, session, alice_api):
    base = f"/api/vibecode/sessions/{session.public_id}/ports/{PORT}"
    stranger = Preview(daphne_server, session)
    assert stranger.get("/").status_code == 302
    assert alice_api.patch(base, {"public": True}, format="json").status_code == 200
    assert stranger.get("/").status_code == 200
    assert alice_api.patch(base, {"public": False}, format="json").status_code == 200
    # A server process remembers what it let in for up to Admissions.GRANT_SECONDS.
    assert eventually(lambda: stranger.get("/").status_code == 302)


def test_bodies_stream_both_ways_and_events_arrive_as_they_are_sent(daphne_server, session, alice):
    preview = Preview(daphne_server, session)
    preview.sign_in(alice)
    big = preview.get("/big", params={"mb": 20})
    assert big.status_code == 200
    assert (
        hashlib.sha256(big.content).hexdigest() == hashlib.sha256(bytes(range(256)) * 4096 * 20).hexdigest()
    )
    body = bytes(range(256)) * 8192  # 2 MiB
    echoed = preview.client.post("/echo", content=body)
    assert echoed.status_code == 200 and echoed.content == body
    with preview.client.stream("GET", "/events") as events:
        assert events.headers["content-type"] == "text/event-stream"
        lines = events.iter_lines()
        first = next(line for line in lines if line)
        assert first == "data: tick 0"
        rest = [line for line in lines if line]
    assert rest == [f"data: tick {i}" for i in range(1, 5)]


def test_failures_answer_small_pages_never_a_500(daphne_server, session, alice, alice_api):
    preview = Preview(daphne_server, session, 8999)
    preview.sign_in(alice)
    nothing = preview.get("/")
    assert nothing.status_code == 502 and "Nothing listening" in nothing.text
    unknown = httpx.get(daphne_server.url + "/", headers={"Host": f"{PORT}-aaaaaaaaaa.localhost"})
    assert unknown.status_code == 404
    assert alice_api.post(f"/api/vibecode/sessions/{session.public_id}/suspend").status_code == 200
    assert eventually(lambda: preview.get("/").status_code == 503)
    assert "not running" in preview.get("/").text


def ws_connect(daphne, host: str, cookie: str = "") -> tuple[socket.socket, WSConnection]:
    sock = socket.create_connection(("127.0.0.1", daphne.port), timeout=30)
    conn = WSConnection(ConnectionType.CLIENT)
    extra = [("cookie", cookie)] if cookie else []
    sock.sendall(conn.send(ws.Request(host=host, target="/ws", extra_headers=extra)))
    return sock, conn


def ws_events(sock: socket.socket, conn: WSConnection, until) -> list:
    seen: list = []
    deadline = time.monotonic() + 30
    while not any(until(event) for event in seen):
        assert time.monotonic() < deadline, seen
        data = sock.recv(65536)
        conn.receive_data(data or None)
        seen.extend(conn.events())
        if not data:
            break
    return seen


def test_a_websocket_echo_server_answers_through_the_preview(daphne_server, session, alice):
    preview = Preview(daphne_server, session)
    preview.sign_in(alice)
    cookie = f"{previews.PREVIEW_COOKIE}={preview.cookie}"
    sock, conn = ws_connect(daphne_server, preview.host, cookie)
    assert any(isinstance(e, ws.AcceptConnection) for e in ws_events(sock, conn, lambda e: True))
    sock.sendall(conn.send(ws.TextMessage(data="hello")))
    texts = ws_events(sock, conn, lambda e: isinstance(e, ws.TextMessage))
    assert [e.data for e in texts if isinstance(e, ws.TextMessage)] == ["hello"]
    blob = bytes(range(256)) * 1024
    sock.sendall(conn.send(ws.BytesMessage(data=blob)))
    got = b""
    while len(got) < len(blob):
        got += b"".join(
            bytes(e.data)
            for e in ws_events(sock, conn, lambda e: isinstance(e, ws.BytesMessage))
            if isinstance(e, ws.BytesMessage)
        )
    assert got == blob
    # A close code the browser can't be sent (1011 from the program) arrives mapped, not lost.
    sock.sendall(conn.send(ws.TextMessage(data="close:1011")))
    closes = [
        e
        for e in ws_events(sock, conn, lambda e: isinstance(e, ws.CloseConnection))
        if isinstance(e, ws.CloseConnection)
    ]
    assert closes and closes[0].code == 4011
    sock.close()
    # Without the cookie, the handshake is refused.
    sock, conn = ws_connect(daphne_server, preview.host)
    refused = ws_events(sock, conn, lambda e: isinstance(e, (ws.RejectConnection, ws.CloseConnection)))
    assert not any(isinstance(e, ws.AcceptConnection) for e in refused)
    sock.close()


def test_many_previews_at_once_while_another_user_works(daphne_server, session, alice, bob_api):
    """Forty parallel GETs on one tunnel; another user's API stays normal meanwhile."""
    preview = Preview(daphne_server, session)
    preview.sign_in(alice)
    cookies = {previews.PREVIEW_COOKIE: preview.cookie}
    results: list[int] = []

    def one() -> None:
        with httpx.Client(
            base_url=daphne_server.url, headers={"Host": preview.host}, cookies=cookies, timeout=60
        ) as c:
            results.append(c.get("/").status_code)

    threads = [threading.Thread(target=one) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert results.count(200) == 40, results
    assert bob_api.get("/api/vibecode/sessions").status_code == 200
