"""A tenant attacks their own helper (issue 12), on the real Docker engine.

The tenant acts from inside the sandbox, as the sandbox user, the way their terminal would
(``docker exec`` into the container with its environment). Each test plants one hostile setup and
asserts that the next API call works normally within seconds, that the user's program never ran
as the helper (it would have left a marker file), and that another user's calls stay fast
meanwhile.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import docker
import pytest
from django.db import connection
from rest_framework.test import APIClient

from sessions_app.models import Session
from tests.conftest import bearer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.docker]

ENGINE = docker.from_env()
HOME = "/workspace/.home"
USER_SITE = f"{HOME}/.local/lib/python3.11/site-packages"
PACKED_HELPER = "-u -c import base64,zlib"  # sandbox.AGENT_PROGRAM's stub
HELPER_PATTERN = "^/usr/bin/python3 -I -u -c.* serve$"  # not the tunnel (" tunnel 3128")
MIN_SAMPLES = 150


@pytest.fixture(autouse=True)
def _no_rate_limits(settings):
    """The bystander calls far more often than a person; rate limits are not under test here."""
    settings.VIBECODE_RATE_API = settings.VIBECODE_RATE_EXEC = settings.VIBECODE_RATE_SAVE = "100000/m"


def tenant(session: Session, script: str, *, detach: bool = False) -> str:
    """Run ``sh -c script`` in the sandbox as its user, with the container's environment."""
    container = ENGINE.containers.get(session.container_name)
    result = container.exec_run(["sh", "-c", script], user="1000:1000", detach=detach)
    if detach:
        return ""
    output = result.output.decode(errors="replace")
    assert result.exit_code == 0, output
    return output


def helper_pids(session: Session) -> list[int]:
    out = tenant(session, f"pgrep -f '{HELPER_PATTERN}' || true")
    return [int(pid) for pid in out.split()]


def processes(session: Session) -> list[str]:
    top = ENGINE.api.top(session.container_name, ps_args="-eo pid,stat,args")
    return [" ".join(process) for process in top["Processes"]]


def wait_for(condition, *, timeout: float, what: str, show=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what} {show()}"
        time.sleep(0.1)


def create_session(api: APIClient, name: str) -> Session:
    response = api.post("/api/vibecode/sessions/create", {"name": name}, format="json")
    assert response.status_code == 201, response.content
    return Session.objects.get(public_id=response.json()["session_id"])


def base_of(session: Session) -> str:
    return f"/api/vibecode/sessions/{session.public_id}"


@contextmanager
def bystander(user, session: Session) -> Iterator[list[float]]:
    """Another user listing their files in a loop on a thread (after one warm-up call that
    starts their helper); yields the latencies, at least ``MIN_SAMPLES`` of them."""
    latencies: list[float] = []
    failures: list[str] = []
    stop = threading.Event()
    warm = threading.Event()

    def loop() -> None:
        client = APIClient()
        client.credentials(**bearer(user))
        try:
            client.get(f"{base_of(session)}/files", {"path": ""})
            warm.set()
            while not stop.is_set():
                started = time.perf_counter()
                response = client.get(f"{base_of(session)}/files", {"path": ""})
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.content[:200]!r}")
                time.sleep(0.03)
        finally:
            connection.close()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    assert warm.wait(60), "the bystander's first call never returned"
    try:
        yield latencies
        wait_for(lambda: len(latencies) >= MIN_SAMPLES, timeout=60, what="the bystander's samples")
    finally:
        stop.set()
        thread.join(30)
    assert not failures, failures
    p99 = statistics.quantiles(latencies, n=100)[98]
    assert p99 < 1.0, f"another user's p99 was {p99:.3f} s"


def works_normally(api: APIClient, session: Session, *, within: float = 5.0) -> float:
    """List, save, read and exec in the session; all must succeed within ``within`` seconds."""
    base = base_of(session)
    started = time.monotonic()
    listing = api.get(f"{base}/files", {"path": ""})
    assert listing.status_code == 200, listing.content
    saved = api.put(f"{base}/files/content", {"path": "after.txt", "content": "fine"}, format="json")
    assert saved.status_code == 200, saved.content
    read = api.get(f"{base}/files/content", {"path": "after.txt"})
    assert read.status_code == 200 and read.json()["content"] == "fine", read.content
    ran = api.post(f"{base}/exec", {"argv": ["echo", "ok"]}, format="json")
    assert ran.status_code == 200 and ran.json()["stdout"] == "ok\n", ran.content
    elapsed = time.monotonic() - started
    assert elapsed < within, f"the session took {elapsed:.1f} s to answer normally"
    return elapsed


def the_helper_is_ours(session: Session) -> None:
    helpers = [cmd for cmd in processes(session) if PACKED_HELPER in cmd and cmd.endswith(" serve")]
    assert helpers, processes(session)
    for cmd in helpers:
        assert "/usr/bin/python3 -I -u -c" in cmd, cmd


def kill_helpers(session: Session) -> None:
    before = helper_pids(session)
    assert before, "no helper to kill"
    tenant(session, f"pkill -KILL -f '{HELPER_PATTERN}'")
    wait_for(lambda: not set(before) & set(helper_pids(session)), timeout=10, what="the helper to die")


PLANTS = {
    # A program named python3 first on the sandbox PATH (~/.local/bin).
    "python3 on PATH": (
        {f"{HOME}/.local/bin/python3": "#!/bin/sh\ntouch /workspace/MARKER\nexec sleep 600\n"},
        ["python3", "-c", "pass"],
    ),
    # Modules the helper imports, in /workspace (python3 -c puts the cwd first on sys.path).
    "json.py in /workspace": (
        {
            "/workspace/json.py": "open('/workspace/MARKER', 'w').close()\n",
            "/workspace/struct.py": "open('/workspace/MARKER', 'w').close()\n",
            "/workspace/sitecustomize.py": "open('/workspace/MARKER', 'w').close()\n",
        },
        ["python3", "-c", "import json"],
    ),
    # A .pth file in the user site (PYTHONUSERBASE), and a usercustomize there.
    ".pth in the user site": (
        {
            f"{USER_SITE}/evil.pth": "import os; open('/workspace/MARKER', 'w').close()\n",
            f"{USER_SITE}/usercustomize.py": "open('/workspace/MARKER', 'w').close()\n",
        },
        ["python3", "-c", "pass"],
    ),
}


@pytest.mark.parametrize("plant", list(PLANTS))
def test_nothing_the_user_writes_runs_as_the_helper(alice, alice_api, bob, bob_api, sandboxes, plant):
    files, probe = PLANTS[plant]
    session = create_session(alice_api, "victim")
    other = create_session(bob_api, "bystander")
    base = base_of(session)
    assert alice_api.get(f"{base}/files", {"path": ""}).status_code == 200  # a helper runs
    for path, content in files.items():
        directory = path.rsplit("/", 1)[0]
        tenant(session, f"mkdir -p {directory} && cat > {path} <<'EOF'\n{content}EOF\nchmod +x {path}")

    # The plant is real: the user's own python3 falls for it.
    probe_run = alice_api.post(f"{base}/exec", {"argv": probe, "timeout": 5}, format="json")
    assert probe_run.status_code == 200, probe_run.content
    assert tenant(session, "ls /workspace/MARKER 2>/dev/null || true").strip() == "/workspace/MARKER"
    tenant(session, "rm -f /workspace/MARKER")

    with bystander(bob, other):
        kill_helpers(session)  # the backend must start a new helper now
        works_normally(alice_api, session)
    assert tenant(session, "ls /workspace/MARKER 2>/dev/null || true").strip() == ""
    the_helper_is_ours(session)


def test_a_helper_stopped_during_a_large_save_is_replaced_and_no_data_is_lost(
    alice, alice_api, bob, bob_api, sandboxes, settings
):
    session = create_session(alice_api, "victim")
    other = create_session(bob_api, "bystander")
    base = base_of(session)
    old = "old\n" * 1000
    saved = alice_api.put(f"{base}/files/content", {"path": "big.txt", "content": old}, format="json")
    assert saved.status_code == 200, saved.content
    new = "x" * (4 * 1024 * 1024)

    with bystander(bob, other):
        tenant(session, f"pkill -STOP -f '{HELPER_PATTERN}'")
        started = time.monotonic()
        response = alice_api.put(f"{base}/files/content", {"path": "big.txt", "content": new}, format="json")
        waited = time.monotonic() - started
        # Refused as soon as the helper is found silent (not the client's 90 s), with the JSON shape.
        assert waited < settings.VIBECODE_HELPER_STALL_SECONDS + 10, waited
        assert response.status_code == 503, response.content
        assert response.json()["code"] == "helper_unavailable"
        works_normally(alice_api, session)

    # No data lost: the file is the old version, whole (the save was atomic).
    read = alice_api.get(f"{base}/files/content", {"path": "big.txt"})
    assert read.status_code == 200 and read.json()["content"] == old
    # The stopped helper was killed, not left behind holding its temporary file.
    wait_for(
        lambda: not [p for p in processes(session) if p.split(" ", 2)[1].startswith("T")],
        timeout=10,
        what="the stopped helper to be killed",
        show=lambda: processes(session),
    )
    the_helper_is_ours(session)


FORGER = r"""
import json, os, signal, struct, sys, time
pid = int(sys.argv[1])
out = os.open(f"/proc/{pid}/fd/1", os.O_WRONLY)  # the helper's stdout, kept open
os.kill(pid, signal.SIGKILL)
def frame(header):
    data = json.dumps(dict(header, size=0)).encode()
    return struct.pack(">I", len(data)) + data
burst = b"".join(frame({"id": i, "ok": True, "more": True}) for i in range(1, 400))
burst += frame({"id": 0, "beat": True})
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    try:
        os.write(out, burst)
    except OSError:
        break
    time.sleep(0.01)
"""


def test_a_helper_replaced_by_an_endless_stream_of_frames_is_replaced_within_seconds(
    alice, alice_api, bob, bob_api, sandboxes
):
    session = create_session(alice_api, "victim")
    other = create_session(bob_api, "bystander")
    base = base_of(session)
    assert alice_api.get(f"{base}/files", {"path": ""}).status_code == 200
    (pid,) = helper_pids(session)
    tenant(session, f"cat > /tmp/forger.py <<'EOF'\n{FORGER}EOF")

    with bystander(bob, other):
        tenant(session, f"python3 /tmp/forger.py {pid}", detach=True)
        wait_for(lambda: pid not in helper_pids(session), timeout=10, what="the helper to die")
        started = time.monotonic()
        # The first call may find the old helper dead; a look is retried on a new one.
        listing = alice_api.get(f"{base}/files", {"path": ""})
        assert listing.status_code == 200, listing.content
        assert time.monotonic() - started < 15
        works_normally(alice_api, session)
    the_helper_is_ours(session)


def test_a_helper_stopped_while_idle_is_replaced_by_the_next_call_at_once(
    alice, alice_api, bob, bob_api, sandboxes, settings
):
    session = create_session(alice_api, "victim")
    other = create_session(bob_api, "bystander")
    assert alice_api.get(f"{base_of(session)}/files", {"path": ""}).status_code == 200
    with bystander(bob, other):
        tenant(session, f"pkill -STOP -f '{HELPER_PATTERN}'")
        # The scenario is a helper that has been stopped for longer than the stall time.
        time.sleep(settings.VIBECODE_HELPER_STALL_SECONDS + 1)
        # Its silence is noticed before the next call is sent: that call does not wait for it.
        assert works_normally(alice_api, session, within=5.0) < 5.0
    wait_for(
        lambda: not [p for p in processes(session) if p.split(" ", 2)[1].startswith("T")],
        timeout=10,
        what="the stopped helper to be killed",
        show=lambda: processes(session),
    )
    the_helper_is_ours(session)
