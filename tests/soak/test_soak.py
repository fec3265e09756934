"""A soak: 20 users, each with a session, a terminal and a save every second, and a run every
ten seconds, against one daphne with real PostgreSQL, Redis and Docker.

``make test`` runs it for VIBECODE_SOAK_SECONDS=60; ``make soak`` for 30 minutes. Throughout:
no errors, no leaked containers or exec processes, and the backend's memory stays flat.
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from dataclasses import dataclass, field

import docker
import httpx
import pytest
from django.contrib.auth import get_user_model
from websockets.sync.client import connect

from tests.conftest import PASSWORD, Daphne

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]

USERS = int(os.environ.get("VIBECODE_SOAK_USERS", "20"))
SECONDS = float(os.environ.get("VIBECODE_SOAK_SECONDS", "60"))
ENGINE = docker.from_env()


def process_counts(containers) -> dict[str, int]:
    counts = {}
    for container in containers:
        try:
            counts[container.name] = len(ENGINE.api.top(container.id)["Processes"])
        except docker.errors.APIError:
            counts[container.name] = -1  # gone or stopped: the errors say why
    return counts


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


@dataclass
class Tally:
    deadline: float = float("inf")  # set once every user is ready
    saves: int = 0
    runs: int = 0
    echoes: int = 0
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def error(self, message: str) -> None:
        with self.lock:
            self.errors.append(message)


def user_loop(url: str, index: int, tally: Tally, ready: threading.Barrier) -> None:
    client = httpx.Client(base_url=url, timeout=60)
    tokens = client.post("/api/auth/login", json={"username": f"soak{index}", "password": PASSWORD}).json()
    client.headers["Authorization"] = f"Bearer {tokens['access']}"
    created = client.post("/api/vibecode/sessions/create", json={"name": f"soak {index}"})
    if created.status_code != 201:
        tally.error(f"user {index}: create {created.status_code} {created.text[:200]}")
        ready.wait()
        return
    session_id = created.json()["session_id"]
    base = f"/api/vibecode/sessions/{session_id}"
    ws_url = url.replace("http", "ws") + (
        f"/api/vibecode/ws/terminal?session_id={session_id}&terminal_id=soak&token={tokens['access']}"
    )
    ready.wait()
    try:
        _work(client, index, base, ws_url, url, tally)
    except Exception as exc:  # counted, and the session is still deleted below
        tally.error(f"user {index}: {type(exc).__name__}: {exc}")
    finally:
        deleted = client.delete(f"{base}?force=true")
        if deleted.status_code != 204:
            tally.error(f"user {index}: delete {deleted.status_code}")


def _work(client: httpx.Client, index: int, base: str, ws_url: str, url: str, tally: Tally) -> None:
    tick = 0
    with connect(ws_url, origin=url, open_timeout=30) as terminal:
        while time.monotonic() < tally.deadline:
            started = time.monotonic()
            tick += 1
            saved = client.put(
                f"{base}/files/content", json={"path": "main.py", "content": f"print({tick})\n"}
            )
            if saved.status_code != 200:
                tally.error(f"user {index}: save {saved.status_code} {saved.text[:200]}")
            else:
                with tally.lock:
                    tally.saves += 1
            if tick % 10 == 0:
                ran = client.post(f"{base}/run", json={"path": "main.py"})
                if ran.status_code != 200 or ran.json()["stdout"] != f"{tick}\n":
                    tally.error(f"user {index}: run {ran.status_code} {ran.text[:200]}")
                else:
                    with tally.lock:
                        tally.runs += 1
            if tick % 5 == 0:
                terminal.send(json.dumps({"type": "input", "data": f"echo soak-{tick}-$((1+1))\r"}))
                seen = b""
                until = time.monotonic() + 10
                while f"soak-{tick}-2".encode() not in seen and time.monotonic() < until:
                    message = terminal.recv(timeout=10)
                    if isinstance(message, bytes):
                        seen += message
                        terminal.send(json.dumps({"type": "ack", "bytes": 1 << 40}))
                if f"soak-{tick}-2".encode() in seen:
                    with tally.lock:
                        tally.echoes += 1
                else:
                    tally.error(f"user {index}: no terminal echo for tick {tick}")
            time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))


@pytest.mark.timeout(int(SECONDS) + 600)
def test_twenty_users_soak_without_errors_leaks_or_memory_growth(daphne_env, tmp_path, sandboxes):
    for index in range(USERS):
        get_user_model().objects.create_user(f"soak{index}", password=PASSWORD)
    env = {
        **daphne_env,
        "VIBECODE_RATE_API": "1000/m",
        "VIBECODE_RATE_EXEC": "100/m",
        "VIBECODE_RATE_SAVE": "100/m",
    }
    server = Daphne(env, log_path=tmp_path / "soak.log")
    tally = Tally()
    ready = threading.Barrier(USERS + 1, timeout=300)
    label = f"vibecode.instance={env['VIBECODE_INSTANCE']}"
    memory: list[float] = []
    try:
        threads = [
            threading.Thread(target=user_loop, args=(server.url, index, tally, ready), daemon=True)
            for index in range(USERS)
        ]
        for thread in threads:
            thread.start()
        ready.wait()  # every session exists: the soak runs at full load from here
        tally.deadline = time.monotonic() + SECONDS
        containers = ENGINE.containers.list(filters={"label": label})
        # Processes per sandbox once warm (helper, PTY host, shell started), and again at the end.
        warm_at = time.monotonic() + min(10.0, SECONDS / 3)
        processes_start: dict[str, int] = {}
        processes_end: dict[str, int] = {}
        while time.monotonic() < tally.deadline:
            memory.append(rss_mb(server.process.pid))
            time.sleep(2)
            if time.monotonic() > warm_at and not processes_start:
                processes_start = process_counts(containers)
            if tally.deadline - time.monotonic() < 4 and not processes_end:
                processes_end = process_counts(containers)
        for thread in threads:
            thread.join(120)
    finally:
        server.stop()

    third = max(1, len(memory) // 3)
    early, late = statistics.mean(memory[:third]), statistics.mean(memory[-third:])
    print(
        f"\nsoak: {USERS} users, {SECONDS:.0f} s: {tally.saves} saves, {tally.runs} runs, "
        f"{tally.echoes} terminal echoes, {len(tally.errors)} errors; "
        f"backend RSS {early:.0f} MB early, {late:.0f} MB late, max {max(memory):.0f} MB"
    )
    assert tally.errors == []
    assert tally.saves >= USERS * SECONDS * 0.7, "the saves kept their pace"
    assert late - early < 60, f"backend memory grew from {early:.0f} to {late:.0f} MB"
    grown = {
        name: (processes_start[name], count)
        for name, count in processes_end.items()
        if count > processes_start.get(name, 0) + 2
    }
    assert grown == {}, f"processes accumulated in sandboxes: {grown}"
    left = [(c.name, c.status) for c in ENGINE.containers.list(all=True, filters={"label": label})]
    assert left == [], (
        f"every container was removed: {left}; alive threads: {[t.is_alive() for t in threads]}"
    )
