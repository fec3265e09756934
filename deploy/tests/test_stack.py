"""The seed guide's compose stack, end to end, through nginx on 127.0.0.1 only.

The tests run in file order and build on each other (one stack for the whole file, as an
operator would have it): two backends from a fresh database, then every check of the issue,
then stopping a replica, then `down` and `up` again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from compose_stack import TEST_PASSWORD, TEST_USER, Stack, docker, wait_until
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

UPLOAD_BYTES = 50 * 1024 * 1024
HELLO = "import sys\nprint('hello from', sys.argv[0], 6 * 7)\n"
JWT_SHAPE = re.compile(r"eyJ[A-Za-z0-9_-]{8,}")


class State:
    """What earlier tests leave for later ones."""

    access = ""
    refresh = ""
    session_a = ""
    session_b = ""
    upload_sha256 = ""
    b_content = ""


@pytest.fixture(scope="module")
def up(stack: Stack) -> Iterator[Stack]:
    # Two replicas from an empty database: both migrate at once, serialised by the lock.
    stack.compose("up", "-d", "--no-build", "--scale", "backend=2")
    stack.wait_healthy(backends=2)
    backend = stack.containers("backend")[0]
    created = docker("exec", backend, "python", "manage.py", "create_test_user", "--force")
    assert "testuser" in created.stdout
    yield stack


@pytest.fixture(scope="module")
def state() -> State:
    return State()


def api(stack: Stack, state: State) -> httpx.Client:
    return stack.http(state.access)


def request_id(response: httpx.Response) -> str:
    rid = response.headers.get("X-Request-ID", "")
    assert rid, f"no X-Request-ID on {response.request.url.path}: not answered by the backend?"
    return rid


def ticket(stack: Stack, state: State, session_id: str) -> str:
    with api(stack, state) as client:
        response = client.post(f"/api/vibecode/sessions/{session_id}/terminals/ticket")
    assert response.status_code in (200, 201), response.text
    value: str = response.json()["ticket"]
    stack.credentials.add(value)
    return value


def terminal(stack: Stack, session_id: str, terminal_id: str, **credential: str) -> ClientConnection:
    query = "&".join(
        f"{k}={v}" for k, v in {"session_id": session_id, "terminal_id": terminal_id, **credential}.items()
    )
    return connect(
        f"ws://127.0.0.1:{stack.port}/api/vibecode/ws/terminal?{query}",
        origin=Origin(stack.origin),
        proxy=None,
        open_timeout=20,
    )


def read_until(ws: ClientConnection, needle: bytes, timeout: float = 20) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{needle!r} not seen in the terminal; got {seen[-500:]!r}")
        try:
            frame = ws.recv(timeout=left)
        except TimeoutError:
            continue
        seen += frame if isinstance(frame, bytes) else b""
    return seen


def exec_sha256(stack: Stack, state: State, session_id: str, path: str) -> str:
    with api(stack, state) as client:
        response = client.post(
            f"/api/vibecode/sessions/{session_id}/exec", json={"argv": ["sha256sum", path], "timeout": 60}
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["exit_code"] == 0, body
    return str(body["stdout"].split()[0])


# --- the stack comes up -----------------------------------------------------------------------


def test_two_replicas_migrated_one_at_a_time(up: Stack) -> None:
    logs = {name: up.logs(name) for name in up.containers("backend")}
    applied = [name for name, text in logs.items() if "Applying contenttypes.0001_initial" in text]
    assert len(applied) == 1, f"expected exactly one replica to apply the migrations, got {applied}"
    others = [text for name, text in logs.items() if name not in applied]
    assert all("No migrations to apply" in text for text in others)


def test_health_through_nginx(up: Stack) -> None:
    with up.http() as client:
        for path in ("/api/health", "/health"):
            response = client.get(path)
            assert response.status_code == 200
            body = response.json()
            assert body["status"] == "ok", body
            assert {name: c["status"] for name, c in body["checks"].items()} == {
                "database": "ok",
                "channel_layer": "ok",
                "docker": "ok",
                "engines": "ok",
            }
        assert client.get("/nginx-health").text == "ok\n"


def test_backend_runs_as_non_root_with_the_docker_socket(up: Stack) -> None:
    for name in up.containers("backend"):
        assert docker("exec", name, "id", "-u").stdout.strip() == "10001"
    # The seed guide's commands, with Django's equivalents.
    backend = up.containers("backend")[0]
    assert "No migrations to apply" in docker("exec", backend, "python", "manage.py", "migrate").stdout
    docker("exec", backend, "python", "manage.py", "check_schema")
    pgsql = up.containers("pgsql")[0]
    dump = docker("exec", pgsql, "pg_dump", "-U", "pguser", "database").stdout
    assert "CREATE TABLE public.sessions_app_session" in dump


def test_static_files_come_from_nginx_with_security_headers(up: Stack) -> None:
    with up.http() as client:
        response = client.get("/static/vibecode/app.css", headers={"Origin": up.origin})
        assert response.status_code == 200
        assert "X-Request-ID" not in response.headers, "served by the backend, not nginx"
        assert response.headers["Access-Control-Allow-Origin"] == up.origin
        assert (
            "Access-Control-Allow-Origin"
            not in client.get("/static/vibecode/app.css", headers={"Origin": "http://evil.example"}).headers
        )
        page = client.get("/login")
        assert page.status_code == 200
        for headers in (response.headers, page.headers):
            assert headers.get_list("X-Content-Type-Options") == ["nosniff"]
            assert headers.get_list("X-Frame-Options") == ["DENY"]
            assert len(headers.get_list("Referrer-Policy")) == 1
            assert "Permissions-Policy" in headers
        assert page.headers["Server"] == "nginx"


def test_static_files_are_cached_for_good_and_gzipped(up: Stack) -> None:
    """Hashed names and the versioned Monaco folder: immutable, and gzip from the .gz copies."""
    lock = json.loads((Path(__file__).parents[2] / "package-lock.json").read_text())
    monaco = lock["packages"]["node_modules/monaco-editor"]["version"]
    with up.http() as client:
        hashed = re.search(r"/static/vibecode/app\.[0-9a-f]{12}\.css", client.get("/login").text)
        assert hashed, "the login page names app.css by its hashed name"
        for path in (hashed.group(0), f"/static/vendor/monaco-{monaco}/vs/loader.js"):
            response = client.get(path, headers={"Accept-Encoding": "gzip"})
            assert response.status_code == 200, path
            assert "X-Request-ID" not in response.headers, "served by the backend, not nginx"
            assert response.headers["Cache-Control"] == "max-age=315360000, public, immutable", path
            assert response.headers.get("Content-Encoding") == "gzip", path
        assert "immutable" not in client.get("/static/vibecode/app.css").headers["Cache-Control"]


def test_login(up: Stack, state: State) -> None:
    with up.http() as client:
        wrong = client.post("/api/auth/login", json={"username": "testuser", "password": "wrong-password"})
        assert wrong.status_code == 401
    pair = up.login()
    state.access, state.refresh = pair["access"], pair["refresh"]
    with api(up, state) as client:
        me = client.get("/api/me")
    assert me.status_code == 200 and me.json()["username"] == "testuser"


SLOW_CONNECTIONS = 200
SLOW_SECONDS = 30
# "Within a few seconds": a login hashes its password (PBKDF2), on 2 CPUs that others share.
ANSWER_SECONDS = 8


def test_a_slowloris_client_does_not_stop_a_normal_user(up: Stack) -> None:
    """200 connections from loopback that send their headers a byte at a time, for 30 s.

    nginx drops each after client_header_timeout (10 s) and the attacker opens another; all
    the while a normal user's health checks and logins answer, each within ANSWER_SECONDS.
    """
    stop = threading.Event()
    report: dict[str, Any] = {"peak": 0, "closed_by_server": [], "errors": []}

    def attacker() -> None:
        open_: list[tuple[socket.socket, float]] = []
        try:
            while not stop.is_set():
                while len(open_) < SLOW_CONNECTIONS and not stop.is_set():
                    sock = socket.create_connection(("127.0.0.1", up.port), timeout=5)
                    sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                    open_.append((sock, time.monotonic()))
                report["peak"] = max(report["peak"], len(open_))
                for entry in list(open_):
                    sock, since = entry
                    try:
                        if sock.recv(1024, socket.MSG_DONTWAIT) == b"":
                            raise ConnectionResetError("closed")
                        raise ConnectionResetError("answered")  # a 408, or anything: done
                    except BlockingIOError:
                        pass  # still open, waiting for the rest of the header
                    except OSError:
                        report["closed_by_server"].append(time.monotonic() - since)
                        open_.remove(entry)
                        sock.close()
                        continue
                    try:
                        sock.send(b"a")
                    except OSError:
                        report["closed_by_server"].append(time.monotonic() - since)
                        open_.remove(entry)
                        sock.close()
                stop.wait(1.0)
        except Exception as exc:  # reported by the test below, never swallowed
            report["errors"].append(repr(exc))
        finally:
            for sock, _ in open_:
                sock.close()

    thread = threading.Thread(target=attacker, daemon=True)
    thread.start()
    answers: list[tuple[str, int, float]] = []
    try:
        wait_until(lambda: report["peak"] >= SLOW_CONNECTIONS, timeout=20, what="the slow connections")
        deadline = time.monotonic() + SLOW_SECONDS
        with up.http(timeout=10) as client:
            while time.monotonic() < deadline:
                for name, call in (
                    ("health", lambda: client.get("/health")),
                    (
                        "login",
                        lambda: client.post(
                            "/api/auth/login", json={"username": TEST_USER, "password": TEST_PASSWORD}
                        ),
                    ),
                ):
                    started = time.monotonic()
                    response = call()
                    answers.append((name, response.status_code, time.monotonic() - started))
                    if name == "login" and response.status_code == 200:
                        up.credentials.update(response.json().values())
                time.sleep(1.5)
    finally:
        stop.set()
        thread.join(timeout=30)
    (up.artifacts / "slowloris.json").write_text(json.dumps({**report, "answers": answers}, indent=1))
    assert not report["errors"], report["errors"]
    assert report["peak"] >= SLOW_CONNECTIONS
    # nginx gave up on the slow headers (client_header_timeout), not the attacker.
    assert report["closed_by_server"] and min(report["closed_by_server"]) < 20, report["closed_by_server"]
    assert len(answers) >= 10, answers
    slow_or_failed = [a for a in answers if a[1] != 200 or a[2] > ANSWER_SECONDS]
    assert not slow_or_failed, f"{slow_or_failed} of {answers}"


def test_session_is_a_sibling_container_on_the_host_engine(up: Stack, state: State) -> None:
    with api(up, state) as client:
        response = client.post("/api/vibecode/sessions/create", json={"name": "deploy-a"})
    assert response.status_code == 201, response.text
    session = response.json()
    assert session["status"] == "running"
    state.session_a = session["session_id"]
    info = json.loads(docker("inspect", session["container_name"]).stdout)[0]
    assert info["State"]["Running"]
    assert info["Config"]["Labels"]["vibecode.instance"] == up.instance
    assert info["HostConfig"]["NetworkMode"] == "none"
    assert "com.docker.compose.project" not in info["Config"]["Labels"]


def _ip_on(container: str, network_suffix: str) -> str:
    networks = json.loads(docker("inspect", container).stdout)[0]["NetworkSettings"]["Networks"]
    (address,) = [n["IPAddress"] for name, n in networks.items() if name.endswith(network_suffix)]
    return str(address)


def _tcp_from(container: str, host: str, port: int) -> bool:
    """Whether `container` opens a TCP connection to host:port within 5 s (bash's /dev/tcp)."""
    probe = f"exec 3<>/dev/tcp/{host}/{port}"
    return docker("exec", container, "timeout", "5", "bash", "-c", probe, check=False).returncode == 0


def test_nginx_cannot_reach_redis_or_postgresql(up: Stack) -> None:
    nginx = up.containers("nginx")[0]
    redis_ip = _ip_on(up.containers("redis")[0], "_data")
    pgsql_ip = _ip_on(up.containers("pgsql")[0], "_data")
    assert _tcp_from(nginx, "backend", 8000), "the probe itself works: nginx reaches a backend"
    for host, port in ((redis_ip, 6379), ("redis", 6379), (pgsql_ip, 5432), ("pgsql", 5432)):
        assert not _tcp_from(nginx, host, port), f"nginx reached {host}:{port}"


def test_redis_refuses_clients_without_the_password(up: Stack) -> None:
    backend = up.containers("backend")[0]
    ping = "import os, redis; print('PING', redis.Redis.from_url(os.environ[{}]).ping())"
    anonymous = docker(
        "exec", "-e", "ANON=redis://redis:6379/0", backend, "python", "-c", ping.format("'ANON'"), check=False
    )
    assert anonymous.returncode != 0 and "PING" not in anonymous.stdout, anonymous
    assert re.search(r"NOAUTH|Authentication required|AuthenticationError", anonymous.stderr), anonymous
    with_password = docker("exec", backend, "python", "-c", ping.format("'REDIS_URL'"))
    assert "PING True" in with_password.stdout
    redis_container = up.containers("redis")[0]
    assert "NOAUTH" in docker("exec", redis_container, "redis-cli", "ping").stdout


def test_a_sandbox_cannot_reach_redis(up: Stack, state: State) -> None:
    redis_ip = _ip_on(up.containers("redis")[0], "_data")
    connect_ = f"import socket; socket.create_connection(('{redis_ip}', 6379), 3); print('CONNECTED')"
    with api(up, state) as client:
        response = client.post(
            f"/api/vibecode/sessions/{state.session_a}/exec",
            json={"argv": ["python3", "-c", connect_], "timeout": 30},
        )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["exit_code"] != 0 and "CONNECTED" not in result["stdout"], result
    assert "unreachable" in result["stderr"], result


def test_file_save_and_run(up: Stack, state: State) -> None:
    base = f"/api/vibecode/sessions/{state.session_a}"
    with api(up, state) as client:
        saved = client.put(f"{base}/files/content", json={"path": "hello.py", "content": HELLO})
        assert saved.status_code == 200, saved.text
        run = client.post(f"{base}/run", json={"path": "hello.py"})
    assert run.status_code == 200, run.text
    assert run.json()["exit_code"] == 0
    assert "hello from" in run.json()["stdout"] and "42" in run.json()["stdout"]


def test_terminal_websocket_through_nginx(up: Stack, state: State) -> None:
    with terminal(up, state.session_a, "main", ticket=ticket(up, state, state.session_a)) as ws:
        ws.send(json.dumps({"type": "input", "data": "echo ws-$((6*7))-ok\r"}))
        read_until(ws, b"ws-42-ok")
    # The seed guide's form, a JWT in the query string: it must not reach a log either.
    with terminal(up, state.session_a, "main", token=state.access) as ws:
        ws.send(json.dumps({"type": "input", "data": "echo again-$((6*7))\r"}))
        read_until(ws, b"again-42")
    # A ticket is single-use: the second handshake is refused, through nginx too.
    used = ticket(up, state, state.session_a)
    with terminal(up, state.session_a, "main", ticket=used):
        pass
    with pytest.raises(InvalidStatus) as refused:
        terminal(up, state.session_a, "main", ticket=used)
    assert refused.value.response.status_code == 403


def test_50_mb_upload_through_nginx(up: Stack, state: State, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    digest = hashlib.sha256()
    with big.open("wb") as f:
        for _ in range(UPLOAD_BYTES // (1024 * 1024)):
            chunk = os.urandom(1024 * 1024)
            digest.update(chunk)
            f.write(chunk)
    state.upload_sha256 = digest.hexdigest()
    with api(up, state) as client, big.open("rb") as f:
        response = client.post(
            f"/api/vibecode/sessions/{state.session_a}/files/upload",
            data={"path": "uploads"},
            files={"files": ("big.bin", f, "application/octet-stream")},
            timeout=180,
        )
    assert response.status_code == 201, response.text
    assert response.json()[0]["size"] == UPLOAD_BYTES
    assert exec_sha256(up, state, state.session_a, "uploads/big.bin") == state.upload_sha256


# --- two replicas -----------------------------------------------------------------------------


def test_nginx_balances_across_both_replicas(up: Stack, state: State) -> None:
    with api(up, state) as client:
        ids = [request_id(client.get("/api/me")) for _ in range(30)]
    served = up.replica_of(ids)
    assert len(served) == len(ids)
    counts = {name: list(served.values()).count(name) for name in up.containers("backend")}
    assert all(count > 0 for count in counts.values()), counts


def test_a_session_created_on_one_replica_is_used_through_the_other(up: Stack, state: State) -> None:
    with api(up, state) as client:
        created = client.post("/api/vibecode/sessions/create", json={"name": "deploy-b"})
        assert created.status_code == 201, created.text
        state.session_b = created.json()["session_id"]
        creator = up.replica_of([request_id(created)])[request_id(created)]
        base = f"/api/vibecode/sessions/{state.session_b}"
        used_elsewhere = 0
        for i in range(40):
            state.b_content = f"written through nginx, round {i}\n"
            saved = client.put(
                f"{base}/files/content", json={"path": "notes.txt", "content": state.b_content}
            )
            read = client.get(f"{base}/files/content", params={"path": "notes.txt"})
            assert saved.status_code == 200 and read.status_code == 200, (saved.text, read.text)
            assert read.json()["content"] == state.b_content
            replicas = up.replica_of([request_id(saved), request_id(read)])
            used_elsewhere += sum(1 for name in replicas.values() if name != creator)
            if used_elsewhere >= 2:
                break
    assert used_elsewhere >= 2, "no request on the session reached the other replica"


def test_suspending_on_one_replica_closes_a_terminal_held_by_the_other(up: Stack, state: State) -> None:
    replicas = up.containers("backend")
    terminals: list[tuple[ClientConnection, str]] = []
    try:
        for i in range(12):
            credential = ticket(up, state, state.session_b)
            time.sleep(0.3)  # the ticket request's own upstream connection is closed by now
            before = {name: up.open_upstream_connections(name) for name in replicas}
            ws = terminal(up, state.session_b, f"t{i}", ticket=credential)
            holder = wait_until(
                lambda before=before: next(
                    (n for n in replicas if up.open_upstream_connections(n) > before[n]), None
                ),
                timeout=10,
                what="the replica holding the new WebSocket",
            )
            terminals.append((ws, holder))
            if {h for _, h in terminals} == set(replicas):
                break
        holders = {h for _, h in terminals}
        assert holders == set(replicas), f"every terminal landed on {holders}"

        with api(up, state) as client:
            suspended = client.post(f"/api/vibecode/sessions/{state.session_b}/suspend")
        assert suspended.status_code == 200, suspended.text
        suspender = up.replica_of([request_id(suspended)])[request_id(suspended)]

        for ws, holder in terminals:
            statuses = []
            with pytest.raises(ConnectionClosed) as closed:
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    frame = ws.recv(timeout=deadline - time.monotonic())
                    if isinstance(frame, str):
                        statuses.append(json.loads(frame).get("status"))
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4410, (holder, statuses)
            assert "suspended" in statuses
        assert any(h != suspender for _, h in terminals)
    finally:
        for ws, _ in terminals:
            ws.close()


def test_stopping_a_replica_leaves_the_service_answering(up: Stack, state: State) -> None:
    results: list[tuple[float, int | str]] = []
    stop = threading.Event()

    def load() -> None:
        with api(up, state) as client:
            while not stop.is_set():
                for path in ("/api/health", "/api/me", f"/api/vibecode/sessions/{state.session_a}"):
                    try:
                        results.append((time.monotonic(), client.get(path, timeout=30).status_code))
                    except httpx.HTTPError as exc:
                        results.append((time.monotonic(), repr(exc)))
                time.sleep(0.05)

    worker = threading.Thread(target=load)
    worker.start()
    try:
        time.sleep(2)
        victim, survivor = up.containers("backend")
        up.save_logs()
        stopped_at = time.monotonic()
        docker("stop", "-t", "15", victim)
        time.sleep(6)
    finally:
        stop.set()
        worker.join(timeout=60)
    failures = [r for r in results if r[1] != 200]
    assert not failures, f"{len(failures)} of {len(results)} requests failed: {failures[:5]}"
    assert sum(1 for t, _ in results if t > stopped_at) > 20
    assert up.containers("backend") == [survivor]
    # Writes go through as well, on the survivor.
    with api(up, state) as client:
        saved = client.put(
            f"/api/vibecode/sessions/{state.session_a}/files/content",
            json={"path": "after-stop.txt", "content": "still here\n"},
        )
    assert saved.status_code == 200, saved.text
    assert up.replica_of([request_id(saved)])[request_id(saved)] == survivor


# --- down and up ------------------------------------------------------------------------------


def test_down_and_up_keep_users_sessions_and_files(up: Stack, state: State) -> None:
    with api(up, state) as client:
        me_before = client.get("/api/me").json()
        sessions_before = {s["session_id"]: s["status"] for s in client.get("/api/vibecode/sessions").json()}
    sums_before = {p: exec_sha256(up, state, state.session_a, p) for p in ("hello.py", "uploads/big.bin")}
    assert sums_before["uploads/big.bin"] == state.upload_sha256
    assert sessions_before[state.session_b] == "suspended"

    up.save_logs()
    up.compose("down", "-t", "15")
    assert up.containers("backend", running_only=False) == []
    up.compose("up", "-d", "--no-build")
    up.wait_healthy(backends=1)

    # Same signing secret: the old token still works; the password does too.
    with api(up, state) as client:
        assert client.get("/api/me").json() == me_before
    pair = up.login()
    state.access = pair["access"]
    with api(up, state) as client:
        sessions_after = {s["session_id"]: s["status"] for s in client.get("/api/vibecode/sessions").json()}
        assert sessions_after == sessions_before
        sums_after = {p: exec_sha256(up, state, state.session_a, p) for p in sums_before}
        assert sums_after == sums_before
        resumed = client.post(f"/api/vibecode/sessions/{state.session_b}/resume")
        assert resumed.status_code == 200 and resumed.json()["status"] == "running", resumed.text
        read = client.get(
            f"/api/vibecode/sessions/{state.session_b}/files/content", params={"path": "notes.txt"}
        )
        assert read.json()["content"] == state.b_content
    with terminal(up, state.session_b, "main", ticket=ticket(up, state, state.session_b)) as ws:
        ws.send(json.dumps({"type": "input", "data": "cat notes.txt; echo end-$((6*7))\r"}))
        assert b"written through nginx" in read_until(ws, b"end-42")


def test_no_token_or_ticket_reaches_a_log(up: Stack) -> None:
    up.save_logs()
    logs: dict[str, Any] = up.saved_logs("nginx", "backend")
    assert any(name.startswith("nginx-") for name in logs) and any(
        name.startswith("backend-") for name in logs
    )
    everything = "\n".join(logs.values())
    # The terminal's requests were logged, by path only.
    assert "GET /api/vibecode/ws/terminal HTTP/1.1" in everything
    assert "ticket=" not in everything and "token=" not in everything
    assert not JWT_SHAPE.search(everything), JWT_SHAPE.search(everything)
    leaked = sorted(
        name for name, text in logs.items() for credential in up.credentials if credential in text
    )
    assert not leaked, f"credentials found in {leaked}"
    assert len(up.credentials) >= 6
