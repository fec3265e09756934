"""A run takes all its processes with it, on the real Docker engine (issue 12): setsid, nohup,
double-forked and environment-wiped descendants of a run that ends or times out are gone within a
second; a terminal's background jobs are not a run's and stay. Also the per-workspace cap on
calls in flight."""

from __future__ import annotations

import threading
import time

import docker
import pytest
from django.db import connection
from rest_framework.test import APIClient

from sessions_app.models import Session
from tests.conftest import bearer
from workspace_app import services

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.docker]

ENGINE = docker.from_env()

ESCAPES = (
    "setsid sleep 7771 & "
    "nohup sleep 7772 >/dev/null 2>&1 & "
    "(setsid sh -c 'sleep 7773 &' &) ; "
    "env -i /bin/sh -c 'setsid /bin/sleep 7774 &' ; "
)
MARKS = ("7771", "7772", "7773", "7774")


@pytest.fixture(autouse=True)
def _no_rate_limits(settings):
    settings.VIBECODE_RATE_API = settings.VIBECODE_RATE_EXEC = "100000/m"


def sleepers(session, marks=MARKS) -> list[str]:
    top = ENGINE.api.top(session.container_name, ps_args="-eo pid,args")
    return [" ".join(p) for p in top["Processes"] if any(f"sleep {mark}" in " ".join(p) for mark in marks)]


def gone_within(session, seconds: float, marks=MARKS) -> list[str]:
    """The matching processes still there after polling for ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        left = sleepers(session, marks)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def exec_(api, base, argv, timeout):
    response = api.post(f"{base}/exec", {"argv": argv, "timeout": timeout}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def test_a_timed_out_run_takes_its_setsid_nohup_and_double_forked_children(alice_api, base, session):
    started = time.monotonic()
    result = exec_(alice_api, base, ["sh", "-c", ESCAPES + "sleep 60"], timeout=3)
    assert result["timed_out"] is True
    assert time.monotonic() - started < 3 + 5
    assert gone_within(session, 1.0) == []


def test_a_run_that_ends_takes_its_background_children(alice_api, base, session):
    result = exec_(alice_api, base, ["sh", "-c", ESCAPES + "echo done"], timeout=20)
    assert result["exit_code"] == 0 and result["stdout"] == "done\n", result
    assert gone_within(session, 1.0) == []


def test_the_escapes_would_survive_without_the_helper(session):
    """The same children outlive a plain ``docker exec``: the tests above can fail."""
    container = ENGINE.containers.get(session.container_name)
    container.exec_run(["sh", "-c", ESCAPES + "true"], user="1000:1000")
    deadline = time.monotonic() + 10
    while len(sleepers(session)) < len(MARKS):
        assert time.monotonic() < deadline, sleepers(session)
        time.sleep(0.05)


def test_a_terminals_background_jobs_are_not_a_runs(alice_api, base, session):
    container = ENGINE.containers.get(session.container_name)
    container.exec_run(["sleep", "7779"], user="1000:1000", detach=True)
    deadline = time.monotonic() + 10
    while not sleepers(session, ("7779",)):
        assert time.monotonic() < deadline, "the terminal's job never started"
        time.sleep(0.05)
    exec_(alice_api, base, ["sh", "-c", "setsid sleep 7771 & echo ok"], timeout=10)
    assert gone_within(session, 1.0) == []
    assert len(sleepers(session, ("7779",))) == 1


def test_a_runs_child_dies_with_the_helper(alice, base, session):
    outcome: dict = {}

    def run() -> None:
        client = APIClient()
        client.credentials(**bearer(alice))
        try:
            outcome["response"] = client.post(
                f"{base}/exec",
                {
                    "argv": [
                        "python3",
                        "-c",
                        "import subprocess, time\n"
                        "subprocess.Popen(['setsid', 'sleep', '7774'])\n"
                        "subprocess.Popen(['nohup', 'sleep', '7773'], start_new_session=True)\n"
                        "time.sleep(0.3)\n"
                        "subprocess.run(['sleep', '7775'])\n",
                    ],
                    "timeout": 120,
                },
                format="json",
            )
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 20
    while len(sleepers(session, ("7775", "7774", "7773"))) < 3:
        assert time.monotonic() < deadline, "the run never started"
        time.sleep(0.05)
    container = ENGINE.containers.get(session.container_name)
    container.exec_run(["pkill", "-KILL", "-f", "^/usr/bin/python3 -I -u -c"], user="1000:1000")
    # The run's direct child dies with the helper (PR_SET_PDEATHSIG); what it started, in
    # sessions of its own or not, is killed by the next helper or any live helper's sweep.
    services.workspace_list(session=session, path="")  # a call starts the next helper
    assert gone_within(session, 10.0, ("7775", "7774", "7773")) == []
    thread.join(60)
    assert not thread.is_alive()
    assert outcome["response"].status_code == 503, outcome["response"].content
    assert outcome["response"].json()["code"] == "helper_unavailable"


def test_calls_past_the_cap_in_flight_get_a_fast_503(alice, alice_api, sandboxes, settings):
    settings.VIBECODE_HELPER_MAX_CALLS = 2
    created = alice_api.post("/api/vibecode/sessions/create", {"name": "busy"}, format="json")
    assert created.status_code == 201, created.content
    base = f"/api/vibecode/sessions/{created.json()['session_id']}"
    session = Session.objects.get(public_id=created.json()["session_id"])
    responses: list = []

    def run(mark: str) -> None:
        client = APIClient()
        client.credentials(**bearer(alice))
        try:
            responses.append(
                client.post(f"{base}/exec", {"argv": ["sleep", mark], "timeout": 4}, format="json")
            )
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(mark,)) for mark in ("7.71", "7.72")]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 20
    while len(sleepers(session, ("7.71", "7.72"))) < 2:
        assert time.monotonic() < deadline, "the two runs never started"
        time.sleep(0.05)
    started = time.monotonic()
    busy = alice_api.get(f"{base}/files", {"path": ""})
    assert time.monotonic() - started < 2.0  # refused at once, not after the runs
    assert busy.status_code == 503, busy.content
    assert busy.json()["code"] == "workspace_busy" and busy.json()["detail"]
    for thread in threads:
        thread.join(60)
    assert [r.status_code for r in responses] == [200, 200]
    assert alice_api.get(f"{base}/files", {"path": ""}).status_code == 200
