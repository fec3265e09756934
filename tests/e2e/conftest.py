"""Browser fixtures: a signed-in page on the live daphne, console errors collected."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from django.contrib.auth import get_user_model

from tests.conftest import ARTIFACTS, PASSWORD


@dataclass
class Console:
    errors: list[str] = field(default_factory=list)

    def unexpected(self, *allowed: str) -> list[str]:
        """Errors other than the given substrings (a 409 the test provoked logs a failed load)."""
        return [e for e in self.errors if not any(a in e for a in allowed)]


@pytest.fixture
def console(page) -> Console:
    seen = Console()
    page.on("console", lambda message: seen.errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: seen.errors.append(f"pageerror: {error}"))
    return seen


@pytest.fixture
def signed_in(transactional_db, daphne_server, page, console, sandboxes) -> Iterator[object]:
    """alice, signed in through the login page."""
    get_user_model().objects.create_user("alice", "alice@example.com", PASSWORD)
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(daphne_server.url + "/login")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(daphne_server.url + "/")
    ARTIFACTS.mkdir(exist_ok=True)
    yield page


def csrf(page) -> str:
    return next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")


def create_session_via_api(page, base_url: str, name: str = "work") -> str:
    response = page.request.post(
        f"{base_url}/api/vibecode/sessions/create", data={"name": name}, headers={"X-CSRFToken": csrf(page)}
    )
    assert response.status == 201, response.text()
    return response.json()["session_id"]


def open_ide(page, base_url: str, session_id: str) -> None:
    page.goto(f"{base_url}/ide/{session_id}")
    page.wait_for_selector("[data-testid=terminal] .xterm-rows", timeout=30000)
    wait_for_terminal_text(page, "$")
    wait_for_ide(page)


def wait_for_ide(page, timeout: float = 30000) -> None:
    """Until the whole IDE is wired: the terminal comes first, the editor and the rest after it."""
    page.wait_for_selector("html[data-ide=ready]", state="attached", timeout=timeout)


def terminal_text(page) -> str:
    return page.locator("[data-testid=terminal]:not([hidden]) .xterm-rows").inner_text()


def wait_for_terminal_text(page, text: str, timeout: float = 15000) -> None:
    page.wait_for_function(
        """(text) => {
             const rows = document.querySelector('[data-testid=terminal]:not([hidden]) .xterm-rows');
             return rows && rows.innerText.includes(text);
           }""",
        arg=text,
        timeout=timeout,
    )


def new_file(page, name: str) -> None:
    page.click("[data-testid=new-file]")
    page.fill("[data-testid=dialog-input]", name)
    page.click("#dialog [data-choice=ok]")


def type_in_editor(page, text: str) -> None:
    page.click("[data-testid=editor] .view-lines")
    page.keyboard.press("Control+A")
    page.keyboard.insert_text(text)


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args) -> dict:
    """Pages open as on an OS set to dark (``prefers-color-scheme: dark``), as the screenshots in
    the docs are; Playwright's own default is light. Theme tests emulate the scheme they need."""
    return {**browser_context_args, "color_scheme": "dark"}
