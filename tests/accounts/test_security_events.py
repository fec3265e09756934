"""Security events land in the audit log (SessionEvent), never with a secret in them."""

from __future__ import annotations

import json

import pytest

from sessions_app.models import SessionEvent
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def actions() -> list[str]:
    return list(SessionEvent.objects.order_by("created_at").values_list("action", flat=True))


def test_logins_failed_logins_and_refreshes_are_recorded(api, client, alice):
    api.post("/api/auth/login", {"username": "alice", "password": "wrong"}, format="json")
    tokens = api.post("/api/auth/login", {"username": "alice", "password": PASSWORD}, format="json").json()
    api.post("/api/auth/refresh", {"refresh": tokens["refresh"]}, format="json")
    client.post("/login", {"username": "alice", "password": "also-wrong"})
    client.post("/login", {"username": "alice", "password": PASSWORD})
    assert actions() == ["login_failed", "login", "token_refresh", "login_failed", "login"]
    failed = SessionEvent.objects.filter(action="login_failed").first()
    assert failed.detail["username"] == "alice" and failed.detail["ip"] == "127.0.0.1"
    everything = json.dumps(list(SessionEvent.objects.values("detail")))
    for secret in ["wrong", "also-wrong", PASSWORD, tokens["refresh"], tokens["access"]]:
        assert secret not in everything


@pytest.mark.docker
def test_refused_paths_are_recorded_against_the_session(alice_api, sandboxes):
    session_id = alice_api.post("/api/vibecode/sessions/create", format="json").json()["session_id"]
    alice_api.get(f"/api/vibecode/sessions/{session_id}/files/content", {"path": "../../etc/passwd"})
    event = SessionEvent.objects.get(action="path_refused")
    assert event.session_public_id == session_id
    assert event.detail == {"path": "../../etc/passwd", "reason": "path_outside_workspace"}
