"""The whole life of a session through the API, on the real Docker engine, under runc and runsc."""

from __future__ import annotations

import docker
import pytest
from django.test import override_settings

from sessions_app import services
from sessions_app.models import Session, SessionEvent

pytestmark = [pytest.mark.django_db, pytest.mark.docker]

ENGINE = docker.from_env()


def _exec(session_id: str, *argv: str, timeout: float = 20):
    session = Session.objects.get(public_id=session_id)
    return services.session_exec(session=session, argv=list(argv), timeout=timeout, output_limit=1 << 20)


@pytest.mark.parametrize("runtime", ["runc", "runsc"])
def test_create_exec_write_suspend_resume_read_delete(alice_api, sandboxes, runtime):
    with override_settings(VIBECODE_SANDBOX_RUNTIME=runtime):
        created = alice_api.post("/api/vibecode/sessions/create", {"name": "demo"}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    session_id = body["session_id"]
    assert body["status"] == "running"
    assert body["container_name"] == f"vibecode-{body['container_name'].split('-')[1]}-{session_id}"
    assert body["volume_name"] == body["container_name"] + "-ws"
    assert set(body) >= {
        "session_id",
        "name",
        "status",
        "container_name",
        "volume_name",
        "created_at",
        "last_activity_at",
    }
    container = ENGINE.containers.get(body["container_name"])
    assert container.attrs["HostConfig"]["Runtime"] == runtime

    # Ready for exec as soon as create answers.
    hello = _exec(session_id, "echo", "hi")
    assert (hello.exit_code, hello.stdout) == (0, b"hi\n")
    content = "print('saved before suspend')\n"
    assert _exec(session_id, "sh", "-c", f'printf %s "{content}" > /workspace/main.py').exit_code == 0
    checksum = _exec(session_id, "sha256sum", "/workspace/main.py").stdout.split()[0]

    suspended = alice_api.post(f"/api/vibecode/sessions/{session_id}/suspend")
    assert suspended.status_code == 200 and suspended.json()["status"] == "suspended"
    container.reload()
    assert container.status == "exited"

    resumed = alice_api.post(f"/api/vibecode/sessions/{session_id}/resume")
    assert resumed.status_code == 200 and resumed.json()["status"] == "running"
    assert _exec(session_id, "sha256sum", "/workspace/main.py").stdout.split()[0] == checksum
    assert _exec(session_id, "python3", "/workspace/main.py").stdout == b"saved before suspend\n"

    listed = alice_api.get("/api/vibecode/sessions").json()
    assert [s["session_id"] for s in listed] == [session_id]

    # A running session needs force to delete.
    refused = alice_api.delete(f"/api/vibecode/sessions/{session_id}")
    assert refused.status_code == 409 and refused.json()["code"] == "session_running"
    assert alice_api.delete(f"/api/vibecode/sessions/{session_id}?force=true").status_code == 204

    assert ENGINE.containers.list(all=True, filters={"name": body["container_name"]}) == []
    assert ENGINE.volumes.list(filters={"name": body["volume_name"]}) == []
    assert not Session.objects.filter(public_id=session_id).exists()
    actions = list(
        SessionEvent.objects.filter(session_public_id=session_id)
        .order_by("created_at")
        .values_list("action", flat=True)
    )
    assert actions == ["create", "suspend", "resume", "delete"]


def test_user_installs_survive_suspend_and_resume(alice_api, sandboxes):
    session_id = alice_api.post("/api/vibecode/sessions/create", format="json").json()["session_id"]
    # No network in the sandbox: install a local package with pip --user, and a script with npm.
    setup = (
        "mkdir -p /tmp/pkg/hello && cd /tmp/pkg && "
        "echo 'from setuptools import setup' > setup.py && "
        'echo \'setup(name="hello", version="1.0", packages=["hello"])\' >> setup.py && '
        "echo 'WORD = \"installed\"' > hello/__init__.py && "
        "pip install --user --no-build-isolation --no-index -q /tmp/pkg"
    )
    installed = _exec(session_id, "bash", "-c", setup, timeout=120)
    assert installed.exit_code == 0, installed.stderr.decode()
    alice_api.post(f"/api/vibecode/sessions/{session_id}/suspend")
    alice_api.post(f"/api/vibecode/sessions/{session_id}/resume")
    again = _exec(session_id, "python3", "-c", "import hello; print(hello.WORD)")
    assert again.stdout == b"installed\n", again.stderr.decode()


def test_stats_report_cpu_memory_and_pids(alice_api, sandboxes):
    session_id = alice_api.post("/api/vibecode/sessions/create", format="json").json()["session_id"]
    stats = alice_api.get(f"/api/vibecode/sessions/{session_id}/stats")
    assert stats.status_code == 200
    body = stats.json()
    assert body["memory_limit_bytes"] == 2 * 1024**3
    assert body["memory_bytes"] > 0 and body["pids"] >= 1 and body["cpu_percent"] >= 0
    alice_api.post(f"/api/vibecode/sessions/{session_id}/suspend")
    not_running = alice_api.get(f"/api/vibecode/sessions/{session_id}/stats")
    assert not_running.status_code == 409 and not_running.json()["code"] == "session_not_running"
