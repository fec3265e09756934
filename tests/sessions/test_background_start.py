"""Creates and resumes that answer before the sandbox is up (``{"wait": false}``), on the real
engine: 202 at once with the session claimed, then ``running``; quota refusals still at once; a
failed create ends in ``error`` with its reason, a failed resume goes back to where it was.

The Docker half runs in a thread started on commit, so these tests commit (transaction=True) and
wait for that thread (``services.session_background_wait``) before they look or clean up."""

from __future__ import annotations

import time

import docker
import pytest
from django.test import override_settings

import sessions_app.runtime.docker as docker_backend
from sessions_app import services
from sessions_app.models import Quota, Session
from tests.accounts.test_auth_api import assert_error

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.docker]

ENGINE = docker.from_env()


@pytest.fixture(autouse=True)
def background_done(sandboxes):
    """No background start outlives its test (its sandbox would escape the cleanup)."""
    yield
    services.session_background_wait()


def _create(api, **body):
    return api.post("/api/vibecode/sessions", body, format="json")


def _until(api, session_id: str, *statuses: str, timeout: float = 60.0) -> dict:
    """Poll the session as the IDE page does until its status is one of ``statuses``."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        body = api.get(f"/api/vibecode/sessions/{session_id}").json()
        if not seen or seen[-1] != body["status"]:
            seen.append(body["status"])
        if body["status"] in statuses:
            body["seen"] = seen
            return body
        time.sleep(0.05)
    raise AssertionError(f"the session went through {seen}, never {statuses}")


def test_a_create_without_waiting_answers_202_creating_then_runs(alice_api):
    started = time.monotonic()
    response = _create(alice_api, name="quick", wait=False)
    answered = time.monotonic() - started
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "creating" and body["name"] == "quick"
    running = _until(alice_api, body["session_id"], "running", "error")
    assert running["status"] == "running", running
    assert running["seen"][0] in {"creating", "running"}
    assert running["last_error"] == ""
    # Ready for exec, as after a waited create.
    session = Session.objects.get(public_id=body["session_id"])
    result = services.session_exec(session=session, argv=["echo", "hi"], timeout=20, output_limit=1024)
    assert (result.exit_code, result.stdout) == (0, b"hi\n")
    assert ENGINE.containers.get(session.container_name).status == "running"
    # The answer did not wait for Docker (a generous bound: the cold path takes several times it).
    assert answered < 2.0


def test_without_wait_the_api_still_answers_201_running(alice_api):
    response = _create(alice_api, name="as before")
    assert response.status_code == 201 and response.json()["status"] == "running"


def test_quota_refusals_answer_at_once_without_waiting(alice, alice_api):
    Quota.objects.create(user=alice, max_running=1, max_sessions=2)
    first = _create(alice_api, wait=False)
    assert first.status_code == 202
    # A create still starting counts toward max_running already.
    body = assert_error(_create(alice_api, wait=False), 403, "quota_exceeded")
    assert body["limit"] == "max_running"
    _until(alice_api, first.json()["session_id"], "running")
    assert Session.objects.filter(owner=alice).count() == 1


def test_a_failed_background_create_ends_in_error_with_its_reason(alice_api):
    with override_settings(VIBECODE_SANDBOX_IMAGE="vibecode-no-such-image:never"):
        response = _create(alice_api, name="no image", wait=False)
        assert response.status_code == 202
        services.session_background_wait()
    failed = _until(alice_api, response.json()["session_id"], "error", timeout=5)
    assert "build_sandbox_image" in failed["last_error"]
    assert ENGINE.containers.list(all=True, filters={"name": failed["container_name"]}) == []


def test_a_resume_without_waiting_answers_202_then_runs(alice_api):
    session_id = _create(alice_api).json()["session_id"]
    assert alice_api.post(f"/api/vibecode/sessions/{session_id}/suspend").json()["status"] == "suspended"
    response = alice_api.post(f"/api/vibecode/sessions/{session_id}/resume", {"wait": False}, format="json")
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "resuming"
    assert _until(alice_api, session_id, "running", "suspended")["status"] == "running"
    # Resuming a running session is a no-op, answered at once.
    again = alice_api.post(f"/api/vibecode/sessions/{session_id}/resume", {"wait": False}, format="json")
    assert again.status_code == 200 and again.json()["status"] == "running"


def test_a_failed_background_resume_goes_back_to_suspended_with_its_reason(alice_api, monkeypatch, tmp_path):
    session_id = _create(alice_api).json()["session_id"]
    alice_api.post(f"/api/vibecode/sessions/{session_id}/suspend")
    # The engine goes away between the claim and the start.
    monkeypatch.setattr(docker_backend, "_client", None)
    with override_settings(DOCKER_HOST=f"unix://{tmp_path}/gone.sock"):
        response = alice_api.post(
            f"/api/vibecode/sessions/{session_id}/resume", {"wait": False}, format="json"
        )
        assert response.status_code == 202 and response.json()["status"] == "resuming"
        services.session_background_wait()
    monkeypatch.setattr(docker_backend, "_client", None)
    back = _until(alice_api, session_id, "suspended", "error", timeout=5)
    assert back["status"] == "suspended"
    assert "Docker" in back["last_error"]
    # Retryable: with the engine back, the same resume works and clears the reason.
    assert alice_api.post(f"/api/vibecode/sessions/{session_id}/resume").json()["status"] == "running"
    assert Session.objects.get(public_id=session_id).last_error == ""


def test_a_bad_wait_value_is_refused_with_400(alice_api):
    body = assert_error(_create(alice_api, wait="soon"), 400)
    assert "wait" in body["detail"]
    assert Session.objects.count() == 0
