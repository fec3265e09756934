from __future__ import annotations

import pytest

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def test_it_signs_in_and_out_through_the_pages(client, alice):
    assert client.get("/login").status_code == 200
    response = client.post("/login", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"
    assert b"alice" in client.get("/").content
    assert client.get("/logout").status_code == 200, "GET only asks to confirm"
    assert client.get("/").status_code == 200
    assert client.post("/logout").status_code == 302
    assert client.get("/").status_code == 302


def test_a_wrong_password_shows_a_readable_message(client, alice):
    response = client.post("/login", {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert b"do not match" in response.content
