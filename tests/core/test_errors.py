from __future__ import annotations

import pytest

from tests.accounts.test_auth_api import assert_error

pytestmark = pytest.mark.django_db


def test_an_unknown_api_route_answers_json_404(api):
    assert_error(api.get("/api/does-not-exist"), 404, "not_found")
    assert_error(api.post("/api/vibecode/nothing/here", {}, format="json"), 404, "not_found")


def test_a_wrong_method_answers_json_405(alice_api):
    assert_error(alice_api.delete("/api/me"), 405, "method_not_allowed")


def test_pages_outside_the_api_stay_html(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login")


def test_api_docs_and_schema_are_served_offline(client):
    schema = client.get("/api/schema")
    assert schema.status_code == 200
    assert b"/api/auth/login" in schema.content
    docs = client.get("/api/docs")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in html
    assert "http://" not in html.replace("http://localhost", "") and "https://" not in html
