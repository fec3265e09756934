"""The sign-in page in a real Chromium against a real daphne."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from tests.conftest import ARTIFACTS, PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_user_signs_in_in_chromium(daphne_server, page):
    get_user_model().objects.create_user("alice", "alice@example.com", PASSWORD)
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(daphne_server.url + "/")
    assert "/login" in page.url
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(daphne_server.url + "/")
    assert page.locator("text=Your workspaces").is_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"))
    assert errors == []
