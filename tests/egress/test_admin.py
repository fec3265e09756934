"""Staff read the egress audit in the admin, with filters; nobody adds, edits or deletes a row."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from egress_app.models import EgressConnection

pytestmark = [pytest.mark.django_db]

ROWS = "/admin/egress_app/egressconnection/"


@pytest.fixture
def staff_client(staff) -> Client:
    """Staff holding every permission on the model: what is refused, the admin itself refuses."""
    staff.user_permissions.set(Permission.objects.filter(content_type__app_label="egress_app"))
    client = Client()
    client.force_login(staff)
    return client


@pytest.fixture
def row() -> EgressConnection:
    return EgressConnection.objects.create(
        session_public_id="abcdefgh23",
        method="CONNECT",
        host="pypi.org",
        port=443,
        address="203.0.113.80",
        outcome=EgressConnection.Outcome.OK,
        status_code=200,
        bytes_up=1234,
        bytes_down=56789,
        started_at=timezone.now(),
        duration=timedelta(seconds=2),
    )


def test_staff_list_and_filter_the_audit(staff_client, row):
    EgressConnection.objects.create(
        session_public_id="abcdefgh23",
        method="CONNECT",
        host="evil.test",
        port=443,
        outcome=EgressConnection.Outcome.REFUSED_HOST,
        status_code=403,
        reason="host not allowed",
        started_at=timezone.now(),
        duration=timedelta(0),
    )
    page = staff_client.get(ROWS).content.decode()
    assert "pypi.org" in page and "evil.test" in page and "56789" in page
    refused = staff_client.get(ROWS, {"outcome__exact": "refused_host"}).content.decode()
    assert "evil.test" in refused and "pypi.org" not in refused
    assert "pypi.org" in staff_client.get(ROWS, {"q": "abcdefgh23"}).content.decode()
    assert staff_client.get(f"{ROWS}{row.pk}/change/").status_code == 200  # view-only


def test_the_audit_is_read_only(staff_client, row):
    assert staff_client.get(f"{ROWS}add/").status_code == 403
    staff_client.post(f"{ROWS}{row.pk}/change/", {"host": "changed.test"})
    staff_client.post(f"{ROWS}{row.pk}/delete/", {"post": "yes"})
    staff_client.post(ROWS, {"action": "delete_selected", "_selected_action": [row.pk], "post": "yes"})
    row.refresh_from_db()
    assert row.host == "pypi.org"


def test_other_users_see_nothing(client, alice, row):
    client.force_login(alice)
    assert client.get(ROWS).status_code == 302  # to the admin's sign-in
