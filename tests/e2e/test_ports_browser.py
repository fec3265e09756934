"""The Ports panel in a real Chromium: a server started from the IDE's terminal shows up live with
its process, a toast offers to open it, Public/Private toggles, and the preview pane loads the
port's hand-off. The proxy behind preview origins is in test_preview_browser.py."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from preview_app.models import PreviewPort
from tests.conftest import ARTIFACTS
from tests.e2e.conftest import create_session_via_api, open_ide, wait_for_terminal_text

pytestmark = [pytest.mark.browser, pytest.mark.docker, pytest.mark.django_db(transaction=True)]

PORT = 8123
PREVIEW_PAGE = "<h1>Hello from the preview</h1>"


def test_a_server_started_in_the_terminal_shows_up_in_the_ports_panel(signed_in, daphne_server, console):
    page = signed_in
    session_id = create_session_via_api(page, daphne_server.url, "ports")
    open_ide(page, daphne_server.url, session_id)
    # The panel has listed the ports once, so the server below is new to it (and gets a toast).
    page.wait_for_function("() => Number(document.getElementById('panel-ports').dataset.polled || 0) >= 1")

    page.click("[data-testid=terminal] .xterm-screen")
    page.keyboard.type(f"python3 -m http.server {PORT}\n")
    wait_for_terminal_text(page, f"port {PORT}", timeout=30000)

    toast = page.locator(f"[data-testid=port-toast][data-port='{PORT}']")
    expect(toast).to_be_visible(timeout=30000)
    expect(toast).to_contain_text(f"Port {PORT} is listening")

    page.click("[data-testid=panel-ports]")
    row = page.locator(f"[data-testid=port-row][data-port='{PORT}']")
    expect(row).to_be_visible(timeout=30000)
    expect(row).to_contain_text(f"http.server {PORT}")
    expect(page.locator("[data-testid=ports-count]")).to_have_text("1")
    open_link = row.locator("[data-testid=port-open]")
    assert open_link.get_attribute("href") == f"/sessions/{session_id}/preview/{PORT}/?next=%2F"
    origin = open_link.get_attribute("title").rstrip("/")
    assert origin.startswith(f"http://{PORT}-{session_id}.localhost")

    # Public, then private again: the toggle says so and the flag is stored.
    toggle = row.locator("[data-testid=port-visibility]")
    expect(toggle).to_have_text("Private")
    toggle.click()
    expect(row.locator("[data-testid=port-visibility]")).to_have_text("Public", timeout=30000)
    assert PreviewPort.objects.get(session__public_id=session_id, port=PORT).public

    # The preview pane: the toast's button loads the app's hand-off page into an iframe, which
    # redirects to the port's origin. The proxy serving that origin is tested on its own; here
    # the test answers the hand-off page itself, so only the pane's wiring is under test.
    handoff = f"{daphne_server.url}/sessions/{session_id}/preview/{PORT}/"
    page.route(f"{handoff}**", lambda route: route.fulfill(content_type="text/html", body=PREVIEW_PAGE))
    toast.locator("[data-testid=port-toast-open]").click()
    expect(page.locator("[data-testid=preview-pane]")).to_be_visible()
    expect(page.locator("[data-testid=preview-address]")).to_have_value(f"{origin}/")
    frame = page.frame_locator("[data-testid=preview-frame]")
    expect(frame.locator("h1")).to_have_text("Hello from the preview", timeout=30000)
    expect(page.locator("[data-testid=preview-new-tab]")).to_have_attribute(
        "href", f"/sessions/{session_id}/preview/{PORT}/?next=%2F"
    )

    page.screenshot(path=str(ARTIFACTS / "ports-pane.png"))

    # Make it private again, stop the server: the row goes away.
    row.locator("[data-testid=port-visibility]").click()
    expect(row.locator("[data-testid=port-visibility]")).to_have_text("Private", timeout=30000)
    page.click("[data-testid=panel-terminals]")
    page.click("[data-testid=terminal] .xterm-screen")
    page.keyboard.press("Control+c")
    page.click("[data-testid=panel-ports]")
    expect(row).to_have_count(0, timeout=30000)
    assert console.unexpected() == []
