"""The ports API on a real engine: live ports merged with their stored flags, the toggle, and
every kind of bad request answered with the JSON error shape."""

from __future__ import annotations

import pytest

from preview_app.models import PreviewPort
from tests.preview.conftest import wait_for_port

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.docker]


def test_a_listening_port_shows_its_public_flag_and_can_be_toggled(alice_api, base, session, background):
    server = background(["python3", "-m", "http.server", "8000"])
    row = wait_for_port(alice_api, base, 8000)
    try:
        assert row["public"] is False
        response = alice_api.patch(f"{base}/ports/8000", {"public": True}, format="json")
        assert response.status_code == 200, response.content
        assert response.json() == {"port": 8000, "public": True, "url": row["url"]}
        listing = alice_api.get(f"{base}/ports").json()
        assert listing["public_previews"] is True
        assert [r["public"] for r in listing["ports"] if r["port"] == 8000] == [True]
        private = alice_api.patch(f"{base}/ports/8000", {"public": False}, format="json")
        assert private.json()["public"] is False
        assert PreviewPort.objects.get(session=session, port=8000).public is False
    finally:
        server.stop(alice_api, row["pid"])


def test_a_port_can_be_flagged_before_anything_listens_on_it(alice_api, base, session):
    response = alice_api.patch(f"{base}/ports/5173", {"public": True}, format="json")
    assert response.status_code == 200
    listing = alice_api.get(f"{base}/ports").json()
    assert all(row["port"] != 5173 for row in listing["ports"])  # listed only while listening
    assert all(row["port"] != 3128 for row in listing["ports"])  # the egress port is VibeCode's


@pytest.mark.parametrize(
    ("port", "body", "status", "code"),
    [
        ("abc", {"public": True}, 400, "port_invalid"),
        ("0", {"public": True}, 400, "port_invalid"),
        ("65536", {"public": True}, 400, "port_invalid"),
        ("08000", {"public": True}, 400, "port_invalid"),
        ("3128", {"public": True}, 400, "port_reserved"),
        ("8000", {}, 400, None),
        ("8000", {"public": "maybe"}, 400, None),
        ("8000", ["public"], 400, None),
    ],
)
def test_bad_toggles_get_a_json_error(alice_api, base, session, port, body, status, code):
    response = alice_api.patch(f"{base}/ports/{port}", body, format="json")
    assert response.status_code == status, response.content
    data = response.json()
    assert "detail" in data and "code" in data
    if code:
        assert data["code"] == code
    assert not PreviewPort.objects.filter(session=session, public=True).exists()


def test_another_users_session_is_not_found_and_anonymous_is_refused(api, bob_api, base, session):
    assert bob_api.get(f"{base}/ports").status_code == 404
    assert bob_api.patch(f"{base}/ports/8000", {"public": True}, format="json").status_code == 404
    assert api.get(f"{base}/ports").status_code in (401, 403)
    assert api.patch(f"{base}/ports/8000", {"public": True}, format="json").status_code in (401, 403)
    assert not PreviewPort.objects.exists()


def test_making_a_port_public_is_refused_when_staff_turned_previews_off(alice_api, base, session, settings):
    settings.VIBECODE_PREVIEW_PUBLIC = False
    response = alice_api.patch(f"{base}/ports/8000", {"public": True}, format="json")
    assert response.status_code == 403
    assert response.json()["code"] == "public_previews_disabled"
    assert alice_api.get(f"{base}/ports").json()["public_previews"] is False
    assert alice_api.patch(f"{base}/ports/8000", {"public": False}, format="json").status_code == 200
