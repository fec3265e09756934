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
