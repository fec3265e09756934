"""Limits and hardening, checked on the real engine: what Docker reports, and what a hostile
program inside meets."""

from __future__ import annotations

import threading
import time

import docker
import pytest

from sessions_app import services
from sessions_app.models import Session

pytestmark = [pytest.mark.django_db, pytest.mark.docker]

ENGINE = docker.from_env()


def _create(api, name="limits") -> Session:
    response = api.post("/api/vibecode/sessions/create", {"name": name}, format="json")
    assert response.status_code == 201, response.content
    return Session.objects.get(public_id=response.json()["session_id"])


def _exec(session, *argv, timeout=30):
    return services.session_exec(session=session, argv=list(argv), timeout=timeout, output_limit=1 << 20)


def test_inspected_host_config_shows_every_limit_and_hardening_setting(alice_api, sandboxes):
    session = _create(alice_api)
    attrs = ENGINE.api.inspect_container(session.container_name)
    host = attrs["HostConfig"]
    assert host["Memory"] == 2 * 1024**3 and host["MemorySwap"] == 2 * 1024**3
    assert host["NanoCpus"] == 1_500_000_000
    assert host["PidsLimit"] == 512
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert host["CapDrop"] == ["ALL"]
    assert host["ReadonlyRootfs"] is True
    assert "size=512m" in host["Tmpfs"]["/tmp"]
    assert host["NetworkMode"] == "none"
    assert host["Init"] is True
    assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-file": "1", "max-size": "10m"}}
    assert {"Name": "nofile", "Soft": 4096, "Hard": 4096} in host["Ulimits"]
    assert attrs["Config"]["User"] == "1000:1000"
    assert attrs["Config"]["Labels"]["app"] == "vibecode"
    mounts = {m["Destination"]: m for m in attrs["Mounts"]}
    assert mounts["/workspace"]["Name"] == session.volume_name
    # And from inside: not root, no writable root filesystem, no network but loopback.
    inside = _exec(session, "sh", "-c", "id -u; touch /etc/x 2>&1; ls /sys/class/net")
    lines = inside.stdout.decode().splitlines()
    assert lines[0] == "1000"
    assert "Read-only file system" in lines[1]
    assert lines[2:] == ["lo"]


def test_a_stop_takes_well_under_a_second(alice_api, sandboxes):
    session = _create(alice_api)
    started = time.monotonic()
    alice_api.post(f"/api/vibecode/sessions/{session.public_id}/suspend")
    assert time.monotonic() - started < 1.0


def test_a_fork_bomb_hits_the_pid_limit_and_everything_else_stays_responsive(alice_api, sandboxes):
    victim = _create(alice_api, "bomb")
    bystander = _create(alice_api, "bystander")
    outcome = {}

    def bomb():
        outcome["result"] = _exec(victim, "bash", "-c", "bomb() { bomb | bomb & }; bomb; sleep 8", timeout=6)

    thread = threading.Thread(target=bomb)
    thread.start()
    time.sleep(2)  # the bomb is at its limit by now
    pids = ENGINE.api.stats(victim.container_name, stream=False, one_shot=True)["pids_stats"]["current"]
    assert 400 <= pids <= 512
    # The backend and another session still answer, promptly.
    started = time.monotonic()
    assert alice_api.get("/api/me").status_code == 200
    assert _exec(bystander, "echo", "fine").stdout == b"fine\n"
    assert time.monotonic() - started < 3
    thread.join(30)
    assert outcome["result"].timed_out
    # The timeout killed the whole tree: the container is back to its idle processes.
    time.sleep(0.5)
    processes = ENGINE.api.top(victim.container_name)["Processes"]
    assert len(processes) <= 3, processes


def test_a_memory_bomb_is_killed_by_the_memory_limit_and_reported(alice_api, sandboxes):
    session = _create(alice_api)
    result = _exec(session, "python3", "-c", "b = bytearray(3 * 2**30)")
    assert result.oom_killed is True
    assert result.exit_code == 137
    assert result.timed_out is False
    # The session itself survives.
    assert _exec(session, "echo", "alive").stdout == b"alive\n"


# --- quotas under concurrency (issue 13): real threads, real PostgreSQL row locks ------------------


def _in_parallel(calls):
    """Run the calls at the same moment, each in its own thread with its own connection."""
    from django.db import connection

    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(index, call):
        try:
            barrier.wait(timeout=30)
            results[index] = call()
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads)
    return results


def _client_of(user):
    from rest_framework.test import APIClient

    from tests.conftest import bearer

    client = APIClient()
    client.credentials(**bearer(user))
    return client


def _running_containers(user) -> int:
    from django.conf import settings

    labels = [f"vibecode.user_id={user.pk}", f"vibecode.instance={settings.VIBECODE_INSTANCE}"]
    return len(ENGINE.api.containers(filters={"label": labels, "status": "running"}))


@pytest.mark.django_db(transaction=True)
def test_four_parallel_resumes_never_exceed_max_running_and_the_losers_stay_suspended(alice, sandboxes):
    from sessions_app.models import Quota

    Quota.objects.create(user=alice, max_running=4)
    api = _client_of(alice)
    sessions = [_create(api, f"ws{i}") for i in range(4)]
    for session in sessions:
        assert _exec(session, "sh", "-c", f"echo {session.public_id} > /workspace/mine").exit_code == 0
        assert api.post(f"/api/vibecode/sessions/{session.public_id}/suspend").status_code == 200
    Quota.objects.filter(user=alice).update(max_running=2)

    clients = [_client_of(alice) for _ in sessions]
    responses = _in_parallel(
        [
            (lambda c=client, s=session: c.post(f"/api/vibecode/sessions/{s.public_id}/resume"))
            for client, session in zip(clients, sessions, strict=True)
        ]
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [200, 200, 403, 403], [r.content for r in responses]
    for response in responses:
        if response.status_code == 403:
            body = response.json()
            assert body["code"] == "quota_exceeded" and "max_running" in body["detail"]
    statuses = sorted(Session.objects.filter(owner=alice).values_list("status", flat=True))
    assert statuses == ["running", "running", "suspended", "suspended"]
    assert _running_containers(alice) == 2

    # Nothing was lost: the losers resume once the winners are suspended, with their files.
    winners = [s for s, r in zip(sessions, responses, strict=True) if r.status_code == 200]
    losers = [s for s, r in zip(sessions, responses, strict=True) if r.status_code == 403]
    for session in winners:
        assert api.post(f"/api/vibecode/sessions/{session.public_id}/suspend").status_code == 200
    for session in losers:
        assert api.post(f"/api/vibecode/sessions/{session.public_id}/resume").status_code == 200
        session.refresh_from_db()
        assert _exec(session, "cat", "/workspace/mine").stdout == f"{session.public_id}\n".encode()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("max_sessions", "max_running", "limit"), [(5, 2, "max_running"), (2, 5, "max_sessions")]
)
def test_four_parallel_creates_never_exceed_the_quota(alice, sandboxes, max_sessions, max_running, limit):
    from sessions_app.models import Quota

    Quota.objects.create(user=alice, max_sessions=max_sessions, max_running=max_running)
    clients = [_client_of(alice) for _ in range(4)]
    responses = _in_parallel(
        [
            (lambda c=client, i=i: c.post("/api/vibecode/sessions/create", {"name": f"p{i}"}, format="json"))
            for i, client in enumerate(clients)
        ]
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [201, 201, 403, 403], [r.content for r in responses]
    for response in responses:
        if response.status_code == 403:
            assert response.json()["code"] == "quota_exceeded" and limit in response.json()["detail"]
    assert sorted(Session.objects.filter(owner=alice).values_list("status", flat=True)) == ["running"] * 2
    assert _running_containers(alice) == 2
