from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from django.db import connection
from rest_framework.test import APIClient

from sessions_app.models import Session
from tests.conftest import bearer


@pytest.fixture(autouse=True)
def _no_rate_limits(settings):
    settings.VIBECODE_RATE_API = settings.VIBECODE_RATE_EXEC = settings.VIBECODE_RATE_PORTS = "100000/m"


@pytest.fixture
def session(alice_api, sandboxes) -> Session:
    """A running session of alice's, removed with its volume after the test."""
    response = alice_api.post("/api/vibecode/sessions/create", {"name": "previews"}, format="json")
    assert response.status_code == 201, response.content
    return Session.objects.get(public_id=response.json()["session_id"])


@pytest.fixture
def base(session) -> str:
    return f"/api/vibecode/sessions/{session.public_id}"


class Background:
    """An exec left running on a thread (a server); ``stop`` kills it by pid and joins."""

    def __init__(self, user, base: str, argv: list[str]) -> None:
        self.api, self.base = APIClient(), base
        self.api.credentials(**bearer(user))
        self.result: dict | None = None
        self.thread = threading.Thread(target=self._run, args=(argv,), daemon=True)
        self.thread.start()

    def _run(self, argv: list[str]) -> None:
        try:
            response = self.api.post(f"{self.base}/exec", {"argv": argv, "timeout": 240}, format="json")
            self.result = response.json()
        finally:
            connection.close()

    def stop(self, api, pid: int | None) -> None:
        """Kill the server (from this thread's client) and wait for its exec to return."""
        if pid is not None:
            api.post(f"{self.base}/exec", {"argv": ["/bin/kill", str(pid)], "timeout": 30}, format="json")
        self.thread.join(timeout=240)


@pytest.fixture
def background(alice, base) -> Iterator[Callable[[list[str]], Background]]:
    started: list[Background] = []

    def start(argv: list[str]) -> Background:
        job = Background(alice, base, argv)
        started.append(job)
        return job

    yield start
    # Whatever a failed test left running ends with its session (removed by `sandboxes`).


def wait_for_port(api, base: str, port: int, *, timeout: float = 60.0, pid: bool = True) -> dict:
    """Poll the ports API until ``port`` is listed (with its process when ``pid``)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        response = api.get(f"{base}/ports")
        assert response.status_code == 200, response.content
        last = response.json()
        for row in last["ports"]:
            if row["port"] == port and (row["pid"] is not None or not pid):
                return row
        time.sleep(0.25)
    raise AssertionError(f"port {port} not listed within {timeout:.0f} s: {last}")
