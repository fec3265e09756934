from __future__ import annotations

import pytest

from sessions_app.models import Session


@pytest.fixture
def session(alice_api, sandboxes) -> Session:
    """A running session of alice's, removed with its volume after the test."""
    response = alice_api.post("/api/vibecode/sessions/create", {"name": "workspace"}, format="json")
    assert response.status_code == 201, response.content
    return Session.objects.get(public_id=response.json()["session_id"])


@pytest.fixture
def base(session) -> str:
    return f"/api/vibecode/sessions/{session.public_id}"
