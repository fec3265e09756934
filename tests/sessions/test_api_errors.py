"""Bad input gets a clear error with a stable code, and nothing is lost."""

from __future__ import annotations

import docker
import pytest
from django.test import override_settings

import sessions_app.runtime.docker as docker_backend
from sessions_app.models import Quota, Session
from tests.accounts.test_auth_api import assert_error

pytestmark = [pytest.mark.django_db, pytest.mark.docker]

ENGINE = docker.from_env()


def _create(api, **body):
    return api.post("/api/vibecode/sessions/create", body, format="json")


def test_quota_of_sessions_is_enforced_naming_the_limit(alice, alice_api, sandboxes):
    Quota.objects.create(user=alice, max_sessions=1)
    assert _create(alice_api).status_code == 201
    body = assert_error(_create(alice_api), 403, "quota_exceeded")
    assert body["limit"] == "max_sessions"
    assert "max_sessions" in body["detail"]


def test_quota_of_running_sessions_is_enforced_on_create_and_resume(alice, alice_api, sandboxes):
    Quota.objects.create(user=alice, max_running=1)
    first = _create(alice_api).json()["session_id"]
    body = assert_error(_create(alice_api), 403, "quota_exceeded")
    assert body["limit"] == "max_running"
    alice_api.post(f"/api/vibecode/sessions/{first}/suspend")
    second = _create(alice_api).json()["session_id"]
    assert_error(alice_api.post(f"/api/vibecode/sessions/{first}/resume"), 403, "quota_exceeded")
    alice_api.post(f"/api/vibecode/sessions/{second}/suspend")
    assert alice_api.post(f"/api/vibecode/sessions/{first}/resume").status_code == 200


def test_resume_of_running_and_suspend_of_suspended_are_idempotent(alice_api, sandboxes):
    session_id = _create(alice_api).json()["session_id"]
    for _ in range(2):
        response = alice_api.post(f"/api/vibecode/sessions/{session_id}/resume")
        assert response.status_code == 200 and response.json()["status"] == "running"
    for _ in range(2):
        response = alice_api.post(f"/api/vibecode/sessions/{session_id}/suspend")
        assert response.status_code == 200 and response.json()["status"] == "suspended"


def test_delete_of_a_running_session_without_force_is_refused_and_loses_nothing(alice_api, sandboxes):
    body = _create(alice_api).json()
    assert_error(alice_api.delete(f"/api/vibecode/sessions/{body['session_id']}"), 409, "session_running")
    assert ENGINE.containers.get(body["container_name"]).status == "running"
    assert ENGINE.volumes.get(body["volume_name"])
    # A suspended one needs no force.
    alice_api.post(f"/api/vibecode/sessions/{body['session_id']}/suspend")
    assert alice_api.delete(f"/api/vibecode/sessions/{body['session_id']}").status_code == 204


def test_bob_cannot_see_or_touch_alices_session(alice_api, bob_api, sandboxes):
    body = _create(alice_api).json()
    session_id = body["session_id"]
    for method, url in [
        ("get", f"/api/vibecode/sessions/{session_id}"),
        ("get", f"/api/vibecode/sessions/{session_id}/stats"),
        ("post", f"/api/vibecode/sessions/{session_id}/suspend"),
        ("post", f"/api/vibecode/sessions/{session_id}/resume"),
        ("delete", f"/api/vibecode/sessions/{session_id}?force=true"),
    ]:
        assert_error(getattr(bob_api, method)(url), 404, "session_not_found")
    assert bob_api.get("/api/vibecode/sessions").json() == []
    assert ENGINE.containers.get(body["container_name"]).status == "running"


@pytest.mark.parametrize("session_id", ["nope", "x" * 500, "../../etc", "%00"])
def test_an_unknown_id_answers_404(alice_api, session_id):
    assert_error(alice_api.get(f"/api/vibecode/sessions/{session_id}"), 404)


@pytest.mark.parametrize(
    "name", ["x" * 10_000, "bad\x00name", "line\nbreak", "bell\x07", "   ", "rtl\u202eoverride"]
)
def test_bad_names_are_refused_with_400_and_nothing_is_made(alice_api, name):
    response = _create(alice_api, name=name)
    assert response.status_code == 400, response.content
    assert response.json()["code"] in {"invalid", "invalid_name"}
    assert Session.objects.count() == 0


def test_without_a_docker_engine_create_answers_503_and_leaves_a_clear_error(
    alice_api, monkeypatch, tmp_path
):
    monkeypatch.setattr(docker_backend, "_client", None)
    with override_settings(DOCKER_HOST=f"unix://{tmp_path}/gone.sock"):
        response = _create(alice_api, name="offline")
    monkeypatch.setattr(docker_backend, "_client", None)
    body = assert_error(response, 503, "runtime_unavailable")
    assert "Docker" in body["detail"]
    session = Session.objects.get(name="offline")
    assert session.status == "error" and session.last_error


def test_a_missing_image_answers_a_clear_error(alice_api, sandboxes):
    with override_settings(VIBECODE_SANDBOX_IMAGE="vibecode-no-such-image:never"):
        response = _create(alice_api, name="no image")
    body = assert_error(response, 502, "image_missing")
    assert "build_sandbox_image" in body["detail"]
    session = Session.objects.get(name="no image")
    assert session.status == "error"
    assert ENGINE.containers.list(all=True, filters={"name": session.container_name}) == []
