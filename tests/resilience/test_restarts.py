"""Faults injected for real: PostgreSQL, Redis and the Docker engine restarting, and a backend
killed in the middle of a create. Each has its stated outcome, and no data is lost.

These tests stop servers, so they run last (see ``pytest_collection_modifyitems`` in
tests/conftest.py). They only ever stop servers of their own: the PostgreSQL and Redis that
``make test`` starts for this run (with an outside DATABASE_URL or REDIS_URL they are skipped,
saying why) and a private Docker engine (tests/resilience/conftest.py), never the machine's.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time

import docker
import httpx
import pytest
import websockets
from django.contrib.auth import get_user_model
from django.db import connection

from sessions_app.models import Session
from tests.conftest import PASSWORD, REPO_ROOT, Daphne

pytestmark = [pytest.mark.disruptive, pytest.mark.docker, pytest.mark.django_db(transaction=True)]

ENGINE = docker.from_env()


def _needs(variable: str) -> str:
    value = os.environ.get(variable)
    if not value:
        pytest.skip(f"{variable} is unset: this test restarts the servers `make test` starts itself")
    return value


def _login(url: str) -> dict[str, str]:
    get_user_model().objects.create_user("alice", "alice@example.com", PASSWORD)
    tokens = httpx.post(f"{url}/api/auth/login", json={"username": "alice", "password": PASSWORD}).json()
    return {"Authorization": f"Bearer {tokens['access']}"}


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def _pg_ctl(*args: str) -> None:
    data = _needs("VIBECODE_TEST_PG_DATA")
    subprocess.run(
        ["runuser", "-u", "postgres", "--", "/usr/lib/postgresql/15/bin/pg_ctl", "-D", data, *args],
        check=True,
        capture_output=True,
        timeout=60,
    )


def test_postgresql_restarting_gives_503_json_then_recovers_without_a_backend_restart(
    daphne_server, sandboxes
):
    opts = _needs("VIBECODE_TEST_PG_OPTS")
    url = daphne_server.url
    auth = _login(url)
    assert httpx.get(f"{url}/api/me", headers=auth).status_code == 200
    _pg_ctl("-m", "fast", "-w", "stop")
    try:
        down = httpx.get(f"{url}/api/me", headers=auth)
        assert down.status_code == 503
        assert down.json()["code"] == "database_unavailable"
        health = httpx.get(f"{url}/api/health")
        assert health.status_code == 503 and health.json()["status"] == "down"
    finally:
        _pg_ctl(
            "-o", opts, "-l", os.path.join(os.environ["VIBECODE_TEST_PG_DATA"], "server.log"), "-w", "start"
        )
        connection.close()  # this process's own connection died with the server
    back = _wait(
        lambda: httpx.get(f"{url}/api/me", headers=auth).status_code == 200, 20, "the API to recover"
    )
    assert back
    assert httpx.get(f"{url}/api/health").json()["status"] == "ok"


def test_redis_restarting_keeps_the_api_serving_and_terminals_working(daphne_server, sandboxes):
    port = _needs("VIBECODE_TEST_REDIS_PORT")
    directory = _needs("VIBECODE_TEST_REDIS_DIR")
    url = daphne_server.url
    auth = _login(url)
    session_id = httpx.post(f"{url}/api/vibecode/sessions/create", json={}, headers=auth, timeout=60).json()[
        "session_id"
    ]
    token = auth["Authorization"].split()[1]
    ws_url = f"ws://127.0.0.1:{daphne_server.port}/api/vibecode/ws/terminal?session_id={session_id}&terminal_id=r&token={token}"

    async def echo(ws, word: str) -> None:
        await ws.send(json.dumps({"type": "input", "data": f"echo {word}-$((1+1))\r"}))
        seen = b""
        while f"{word}-2".encode() not in seen:
            message = await asyncio.wait_for(ws.recv(), 10)
            if isinstance(message, bytes):
                seen += message

    def start_redis() -> None:
        subprocess.run(
            ["redis-server", "--bind", "127.0.0.1", "--port", port, "--daemonize", "yes", "--dir", directory,
             "--pidfile", f"{directory}/redis.pid", "--logfile", f"{directory}/redis.log", "--save", "",
             "--appendonly", "no"],
            check=True, capture_output=True, timeout=10,
        )  # fmt: skip
        _wait(
            lambda: subprocess.run(["redis-cli", "-p", port, "ping"], capture_output=True).returncode == 0,
            10,
            "redis",
        )

    async def scenario() -> None:
        async with websockets.connect(ws_url, origin=url) as ws:
            await ws.send(json.dumps({"type": "input", "data": "export KEPT=yes\r"}))
            await echo(ws, "before")
        subprocess.run(["redis-cli", "-p", port, "shutdown", "nosave"], capture_output=True, timeout=10)
        try:
            # Redis is down: the API still serves (rate limits fail open; JWTs need no cache).
            for _ in range(3):
                me = await asyncio.to_thread(httpx.get, f"{url}/api/me", headers=auth)
                assert me.status_code == 200, me.text
        finally:
            await asyncio.to_thread(start_redis)
        # Terminals reconnect to the same shell, retrying with a pause as the IDE does by itself
        # (the first try may meet a pooled connection that died with the old Redis).
        for attempt in range(6):
            try:
                async with websockets.connect(ws_url, origin=url) as ws:
                    await ws.send(json.dumps({"type": "input", "data": "echo kept-$KEPT\r"}))
                    seen = b""
                    while b"kept-yes" not in seen:
                        message = await asyncio.wait_for(ws.recv(), 10)
                        seen += message if isinstance(message, bytes) else b""
                    return
            except websockets.exceptions.WebSocketException:
                await asyncio.sleep(0.5 * 2**attempt)
        raise AssertionError("the terminal did not reconnect after Redis came back")

    asyncio.run(scenario())
    assert httpx.get(f"{url}/api/health").json()["checks"]["channel_layer"]["status"] == "ok"


def test_a_backend_killed_mid_create_leaves_no_orphan_and_no_stuck_row(daphne_env, tmp_path, sandboxes):
    server = Daphne(daphne_env, log_path=tmp_path / "killed.log")
    auth = _login(server.url)
    thread = threading.Thread(
        target=lambda: httpx.post(
            f"{server.url}/api/vibecode/sessions/create", json={}, headers=auth, timeout=30
        ),
        daemon=True,
    )
    thread.start()
    # Kill the server the moment its create is under way (the row exists, the container is being made).
    deadline = time.monotonic() + 10
    while not Session.objects.filter(status="creating").exists():
        assert time.monotonic() < deadline, "the create never started"
        time.sleep(0.005)
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(10)
    thread.join(30)

    env = {**daphne_env, "VIBECODE_STUCK_CREATING_SECONDS": "0"}
    result = subprocess.run(
        [sys.executable, "manage.py", "reconcile_sessions"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    session = Session.objects.get()
    volumes = [v.name for v in ENGINE.volumes.list(filters={"name": session.volume_name})]
    if session.status == "error":
        # Killed before its volume existed: nothing of the user's was there; it says so.
        assert volumes == [] and "volume" in session.last_error, session.last_error
    else:
        assert session.status in {"running", "suspended"}, session.status
        assert volumes == [session.volume_name], "the volume is kept"
    label = f"vibecode.instance={daphne_env['VIBECODE_INSTANCE']}"
    names = {c.name for c in ENGINE.containers.list(all=True, filters={"label": label})}
    assert names <= {session.container_name}, f"orphans: {names}"
    again = subprocess.run(
        [sys.executable, "manage.py", "reconcile_sessions"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "nothing to do" in again.stdout


def test_a_docker_engine_restart_is_reconciled_by_itself_and_resume_works(
    daphne_env, tmp_path, private_engine
):
    # The engine restarted is a private one (tests/resilience/conftest.py): the machine's engine,
    # and every container on it, never notices.
    env = {**daphne_env, "DOCKER_HOST": private_engine.docker_host, "VIBECODE_CLEANUP_INTERVAL": "2"}
    server = Daphne(env, log_path=tmp_path / "engine.log")
    try:
        url = server.url
        auth = _login(url)
        session_id = httpx.post(
            f"{url}/api/vibecode/sessions/create", json={}, headers=auth, timeout=60
        ).json()["session_id"]
        session = Session.objects.get(public_id=session_id)
        assert private_engine.client().containers.get(session.container_name).status == "running"
        base = f"{url}/api/vibecode/sessions/{session_id}"
        saved = httpx.put(
            f"{base}/files/content", json={"path": "keep.txt", "content": "survives\n"}, headers=auth
        )
        assert saved.status_code == 200
        private_engine.stop()
        private_engine.start()
        _wait(
            lambda: Session.objects.get(public_id=session_id).status == "suspended",
            60,
            "the session to be suspended",
        )
        resumed = httpx.post(f"{base}/resume", headers=auth, timeout=60)
        assert resumed.status_code == 200, resumed.text
        content = _wait(
            lambda: (
                (
                    r := httpx.get(f"{base}/files/content", params={"path": "keep.txt"}, headers=auth)
                ).status_code
                == 200
                and r.json()["content"]
            ),
            30,
            "the file",
        )
        assert content == "survives\n"
    finally:
        server.stop()
    # The bystander check in tests/conftest.py asserts the machine's containers kept running.
    assert ENGINE.ping()
