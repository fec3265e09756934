"""The helper's ``ports`` op on a real engine: a server started through exec is listed with its
process; a process listening on a thousand ports gets a bounded list."""

from __future__ import annotations

import time

import pytest

from preview_app import services
from sessions_app.runtime import get_runtime
from sessions_app.specs import session_ref
from tests.preview.conftest import wait_for_port

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.docker]

MANY = """
import socket, time
held = []
for _ in range(1000):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    held.append(s)
print("listening", flush=True)
time.sleep(600)
"""


def test_an_http_server_started_through_exec_is_listed_with_its_process(alice_api, base, session, background):
    server = background(["python3", "-m", "http.server", "8000"])
    row = wait_for_port(alice_api, base, 8000)
    try:
        assert "python3 -m http.server 8000" in row["process"]
        assert row["address"] in {"0.0.0.0", "::"}  # noqa: S104
        assert row["public"] is False
        assert row["url"] == services.preview_url(session, 8000)
    finally:
        server.stop(alice_api, row["pid"])
    assert server.result is not None and server.result["exit_code"] != 0  # killed, not finished


def test_the_helper_reports_a_bounded_list_for_a_thousand_ports(alice_api, base, session, background):
    server = background(["python3", "-c", MANY])
    ref = session_ref(session)
    report = None
    for _ in range(240):
        report = get_runtime().listening_ports(ref)
        if report.truncated:
            break
        time.sleep(0.25)
    assert report is not None and report.truncated, "the thousand ports never showed"
    assert len(report.ports) <= 256
    pids = {p.pid for p in report.ports if p.pid is not None}
    assert len(pids) == 1  # the one process holding them all was found
    # The API answers the same bounded list.
    response = alice_api.get(f"{base}/ports")
    assert response.status_code == 200
    assert response.json()["truncated"] is True
    assert len(response.json()["ports"]) <= 256
    server.stop(alice_api, pids.pop())


def test_a_stopped_session_has_no_ports_to_list(alice_api, base, session):
    assert alice_api.post(f"{base}/suspend").status_code == 200
    response = alice_api.get(f"{base}/ports")
    assert response.status_code == 409
    assert response.json()["code"] == "session_not_running"
