"""The Content-Security-Policy: every page gets it, no page has an inline script the policy would
refuse (the IDE's importmap carries the request's nonce), and in a real Chromium no page (login,
dashboard, the IDE with its terminal, editor and assistant in use, the admin, the API docs) logs a
single violation."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from django.contrib.auth import get_user_model

from sessions_app.models import Session
from tests.assistant.conftest import ollama_daphne, ollama_server  # noqa: F401  (fixtures)
from tests.assistant.test_assistant_browser import ide_with_file
from tests.conftest import PASSWORD
from tests.e2e.conftest import wait_for_terminal_text

pytestmark = [pytest.mark.django_db]


def policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    directives = {}
    for part in header.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


class Scripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "script":
            self.scripts.append(attributes)
        # Inline event handlers are inline scripts too.
        assert not [name for name in attributes if name.startswith("on")], (tag, attributes)


def assert_no_refused_inline_script(response) -> None:
    nonce = next(
        (v[len("'nonce-") : -1] for v in policy(response)["script-src"] if v.startswith("'nonce-")), None
    )
    parser = Scripts()
    parser.feed(response.content.decode())
    for script in parser.scripts:
        if script.get("src") or script.get("type") == "application/json":
            continue
        assert nonce and script.get("nonce") == nonce, script


def assert_locked_down(response) -> None:
    directives = policy(response)
    assert directives["default-src"] == ["'self'"]
    assert "'unsafe-inline'" not in directives["script-src"]
    assert "'unsafe-eval'" not in directives["script-src"]
    assert directives["object-src"] == ["'none'"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert_no_refused_inline_script(response)


def test_the_login_page_has_the_policy(client):
    response = client.get("/login")
    assert response.status_code == 200
    assert_locked_down(response)


def test_the_dashboard_ide_admin_and_api_docs_have_the_policy(client, alice, staff):
    session = Session.objects.create(
        owner=alice, name="csp", status=Session.Status.RUNNING, container_name="vibecode-csp-test"
    )
    client.force_login(alice)
    for path in ["/", f"/ide/{session.public_id}"]:
        response = client.get(path)
        assert response.status_code == 200, path
        assert_locked_down(response)
    staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    for path in ["/admin/", "/admin/sessions_app/session/", "/api/docs"]:
        response = client.get(path)
        assert response.status_code == 200, path
        assert_locked_down(response)


def test_the_ide_importmap_carries_a_fresh_nonce_per_request(client, alice):
    session = Session.objects.create(
        owner=alice, name="csp", status=Session.Status.RUNNING, container_name="vibecode-csp-test"
    )
    client.force_login(alice)
    nonces = []
    for _ in range(2):
        response = client.get(f"/ide/{session.public_id}")
        nonce = re.search(r'<script type="importmap" nonce="([^"]+)"', response.content.decode()).group(1)
        assert f"'nonce-{nonce}'" in policy(response)["script-src"]
        nonces.append(nonce)
    assert nonces[0] != nonces[1]


def test_api_answers_carry_the_policy_too(alice_api):
    response = alice_api.get("/api/me")
    assert response.status_code == 200
    assert policy(response)["default-src"] == ["'self'"]


# --- in the browser ----------------------------------------------------------------------------

CSP_WATCH = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations = window.__cspViolations || [];
  window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


@pytest.mark.browser
@pytest.mark.docker
@pytest.mark.django_db(transaction=True)
def test_no_page_reports_a_csp_violation_in_chromium(ollama_daphne, page, sandboxes):  # noqa: F811
    url = ollama_daphne.url
    violations: list[str] = []
    page.on(
        "console",
        lambda message: (
            violations.append(f"{page.url}: {message.text}")
            if "Content Security Policy" in message.text
            else None
        ),
    )
    page.add_init_script(CSP_WATCH)

    def no_violations_on_this_page() -> None:
        seen = page.evaluate("window.__cspViolations || []")
        assert seen == [], f"{page.url}: {seen}"

    # Login, dashboard, then the IDE with a file in the editor.
    ide_with_file(page, url)
    # The terminal.
    page.click("[data-testid=panel-terminals]")
    page.click("[data-testid=terminal] .xterm-screen")
    page.keyboard.type("echo CSP-$((40+2))-OK\n")
    wait_for_terminal_text(page, "CSP-42-OK", timeout=30000)
    # The assistant: a markdown answer with a highlighted code block.
    page.click("[data-testid=assistant-toggle]")
    page.fill("[data-testid=assistant-input]", "scenario=markdown")
    page.click("[data-testid=assistant-send]")
    page.wait_for_selector("[data-testid=assistant-code][data-highlighted=true]", timeout=30000)
    page.wait_for_selector(
        "[data-testid=assistant-message][data-role=assistant][data-state=done]", timeout=30000
    )
    # The editor's language services (Monaco's workers) at work: hover and suggestions.
    page.click("[data-testid=editor] .view-lines")
    page.keyboard.press("Control+End")
    page.keyboard.type("\npri")
    page.keyboard.press("Control+Space")
    page.wait_for_selector(".monaco-editor .suggest-widget", timeout=30000)
    no_violations_on_this_page()
    page.goto(url + "/")
    page.wait_for_selector("body")
    no_violations_on_this_page()

    # The admin, as staff, and the API docs (Swagger UI).
    get_user_model().objects.create_superuser("root", "root@example.com", PASSWORD)
    page.goto(url + "/admin/login/?next=/admin/")
    page.fill("input[name=username]", "root")
    page.fill("input[name=password]", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(url + "/admin/")
    for path in ["/admin/", "/admin/sessions_app/session/", "/admin/auth/user/add/"]:
        page.goto(url + path)
        page.wait_for_selector("#content")
        no_violations_on_this_page()
    page.goto(url + "/api/docs")
    page.wait_for_selector(".swagger-ui .opblock", timeout=30000)
    no_violations_on_this_page()

    assert violations == []
