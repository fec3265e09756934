"""``POST /api/vibecode/sessions`` creates a session, exactly like the seed's ``/sessions/create``
(kept for its clients); the OpenAPI schema documents both, and every operation's errors."""

from __future__ import annotations

import pytest
import yaml
from django.core.management import call_command

from sessions_app.models import Quota, Session
from tests.accounts.test_auth_api import assert_error

pytestmark = [pytest.mark.django_db]


@pytest.mark.docker
@pytest.mark.parametrize("path", ["/api/vibecode/sessions", "/api/vibecode/sessions/create"])
def test_posting_creates_a_running_session_on_either_path(alice, alice_api, sandboxes, path):
    response = alice_api.post(path, {"name": "posted"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["name"] == "posted" and body["status"] == "running"
    session = Session.objects.get(public_id=body["session_id"])
    assert session.owner == alice and session.container_id
    listed = alice_api.get("/api/vibecode/sessions").json()
    assert [s["session_id"] for s in listed] == [body["session_id"]]


def test_post_to_sessions_gives_the_error_shape_for_bad_input_and_quota(alice, alice_api):
    body = assert_error(
        alice_api.post("/api/vibecode/sessions", {"name": "x" * 1200}, format="json"), 400, "invalid"
    )
    assert "name" in body["errors"]
    Quota.objects.create(user=alice, max_sessions=0)
    assert_error(alice_api.post("/api/vibecode/sessions", {}, format="json"), 403, "quota_exceeded")
    assert Session.objects.count() == 0


def test_post_to_sessions_needs_a_signed_in_user(client):
    response = client.post("/api/vibecode/sessions", {}, content_type="application/json")
    assert response.status_code == 401
    assert set(response.json()) >= {"detail", "code"}


@pytest.fixture(scope="module")
def schema(tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("schema") / "schema.yaml"
    call_command("spectacular", "--fail-on-warn", "--validate", "--file", str(path))
    return yaml.safe_load(path.read_text())


def test_the_schema_has_post_sessions_and_keeps_the_old_create_path(schema):
    paths = schema["paths"]
    create = paths["/api/vibecode/sessions"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "SessionCreateInput"
    )
    assert create["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "SessionOutput"
    )
    legacy = paths["/api/vibecode/sessions/create"]["post"]
    assert legacy["deprecated"] is True
    assert legacy["responses"]["201"] == create["responses"]["201"]
    assert create["operationId"] != legacy["operationId"]


def test_every_operation_documents_its_errors_in_the_detail_code_shape(schema):
    error = schema["components"]["schemas"]["ApiErrorOutput"]
    assert set(error["required"]) == {"detail", "code"}
    assert set(error["properties"]) == {"detail", "code", "errors"}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            statuses = operation["responses"]
            errors = {status for status in statuses if status[0] in "45"}
            assert {"429", "500", "503"} <= errors, (method, path, sorted(statuses))
            for status in errors:
                content = statuses[status]["content"]["application/json"]["schema"]
                assert content["$ref"].endswith("/ApiErrorOutput"), (method, path, status)
            if "{" in path:
                assert "404" in errors, (method, path)
            if operation.get("security") and {} not in operation["security"]:
                assert {"401", "403"} <= errors, (method, path)


def test_the_session_create_errors_are_described(schema):
    responses = schema["paths"]["/api/vibecode/sessions"]["post"]["responses"]
    assert "quota_exceeded" in responses["403"]["description"]
    assert "runtime_unavailable" in responses["503"]["description"]
    assert {"400", "401", "403", "429", "500", "503"} <= set(responses)
