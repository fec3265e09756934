"""Previews end to end in a real Chromium, with real names: the app at ``http://localhost:<port>``
and each sandbox port at ``http://<port>-<session>.localhost:<port>`` (Chromium resolves
``*.localhost`` to loopback), served by daphne through the preview proxy and the tunnel.

The owner opens a server started in the IDE's terminal from the Ports panel and sees its page; the
page never receives VibeCode's cookies; another user and an anonymous visitor do not get in to a
private port, anyone does once it is public. Makes docs/images/ports.png."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from tests.conftest import ARTIFACTS, PASSWORD, REPO_ROOT, Daphne, free_port
from tests.e2e.conftest import create_session_via_api, csrf, open_ide, wait_for_terminal_text

pytestmark = [pytest.mark.browser, pytest.mark.docker, pytest.mark.django_db(transaction=True)]

PORT = 8124
APP = (REPO_ROOT / "tests" / "preview" / "web_server.py").read_text()
MARKER = "served from the sandbox"


@pytest.fixture(scope="module")
def preview_daphne(daphne_env, tmp_path_factory) -> Iterator[Daphne]:
    """A daphne whose preview links name its own port (the shared one's name port 8000)."""
    port = free_port()
    env = {**daphne_env, "VIBECODE_PREVIEW_DOMAIN": "localhost", "VIBECODE_PREVIEW_PORT": str(port)}
    env.update(VIBECODE_PREVIEW_SCHEME="http", VIBECODE_APP_URL=f"http://localhost:{port}")
    server = Daphne(env, log_path=Path(tmp_path_factory.mktemp("preview-daphne")) / "daphne.log", port=port)
    server.url = f"http://localhost:{port}"
    yield server
    server.stop()


def sign_in(page, base: str, username: str) -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


def test_a_preview_opens_from_the_ports_panel_and_stays_private_until_made_public(
    transactional_db, sandboxes, preview_daphne, page, browser, console
):
    base = preview_daphne.url
    users = get_user_model().objects
    users.create_user("alice", "alice@example.com", PASSWORD)
    users.create_user("bob", "bob@example.com", PASSWORD)
    page.set_viewport_size({"width": 1280, "height": 800})
    ARTIFACTS.mkdir(exist_ok=True)
    sign_in(page, base, "alice")
    session_id = create_session_via_api(page, base, "preview")
    saved = page.request.put(
        f"{base}/api/vibecode/sessions/{session_id}/files/content",
        data={"path": "web_server.py", "content": APP},
        headers={"X-CSRFToken": csrf(page)},
    )
    assert saved.ok, saved.text()
    origin = f"http://{PORT}-{session_id}.localhost:{preview_daphne.port}"

    # A server started from the IDE's terminal appears in the Ports panel.
    open_ide(page, base, session_id)
    page.click("[data-testid=terminal] .xterm-screen")
    page.keyboard.type(f"python3 web_server.py {PORT}\n")
    page.click("[data-testid=panel-ports]")
    row = page.locator(f"[data-testid=port-row][data-port='{PORT}']")
    expect(row).to_be_visible(timeout=30000)
    expect(row).to_contain_text(f"web_server.py {PORT}")
    assert row.locator("[data-testid=port-open]").get_attribute("title") == f"{origin}/"

    # Open: a new tab through the hand-off lands on the page the sandbox serves.
    with page.context.expect_page() as opened:
        row.locator("[data-testid=port-open]").click()
    tab = opened.value
    expect(tab.locator("#marker")).to_have_text(MARKER, timeout=30000)
    assert tab.url == f"{origin}/"

    # The page's origin never receives VibeCode's cookies (the app's are host-only on localhost),
    # and the proxy keeps the preview cookie to itself.
    tab.goto(f"{origin}/headers")
    headers = json.loads(tab.locator("body").inner_text())
    cookie = headers.get("cookie", "")
    assert "sessionid" not in cookie and "csrftoken" not in cookie and "vibecode_preview" not in cookie
    app_cookies = {c["name"] for c in page.context.cookies(base)}
    assert "sessionid" in app_cookies  # the browser does hold them, for the app's origin only
    tab.close()

    # Another user gets the not-found page; an anonymous visitor the sign-in page; neither sees it.
    bob = browser.new_context()
    bobs_page = bob.new_page()
    sign_in(bobs_page, base, "bob")
    answer = bobs_page.goto(f"{origin}/")
    assert answer is not None and answer.status == 404
    expect(bobs_page.locator("h1")).to_have_text("Workspace not found")
    stranger = browser.new_context()
    strangers_page = stranger.new_page()
    strangers_page.goto(f"{origin}/")
    assert strangers_page.url.startswith(f"{base}/login")
    assert MARKER not in strangers_page.content()

    # Public: anyone with the link gets the page; the preview pane shows it inside the IDE.
    row.locator("[data-testid=port-visibility]").click()
    expect(row.locator("[data-testid=port-visibility]")).to_have_text("Public", timeout=30000)
    strangers_page.goto(f"{origin}/")
    expect(strangers_page.locator("#marker")).to_have_text(MARKER, timeout=30000)
    row.locator("[data-testid=port-preview]").click()
    frame = page.frame_locator("[data-testid=preview-frame]")
    expect(frame.locator("#marker")).to_have_text(MARKER, timeout=30000)
    expect(page.locator("[data-testid=preview-address]")).to_have_value(f"{origin}/")
    page.mouse.move(0, 0)
    page.screenshot(path=str(ARTIFACTS / "ports.png"))
    shutil.copyfile(ARTIFACTS / "ports.png", REPO_ROOT / "docs" / "images" / "ports.png")

    # Private again: the stranger is sent to sign in once more.
    row.locator("[data-testid=port-visibility]").click()
    expect(row.locator("[data-testid=port-visibility]")).to_have_text("Private", timeout=30000)
    strangers_page.goto(f"{origin}/")
    assert strangers_page.url.startswith(f"{base}/login")
    bob.close()
    stranger.close()

    # Stop the server: its row goes away.
    page.click("[data-testid=panel-terminals]")
    page.click("[data-testid=terminal] .xterm-screen")
    page.keyboard.press("Control+c")
    wait_for_terminal_text(page, "KeyboardInterrupt", timeout=30000)
    page.click("[data-testid=panel-ports]")
    expect(row).to_have_count(0, timeout=30000)
    assert console.unexpected() == []
