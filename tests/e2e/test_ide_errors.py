"""When things go wrong in the IDE, the user reads a message and the page stays usable."""

from __future__ import annotations

import time

import docker
import pytest

from tests.conftest import Daphne
from tests.e2e.conftest import (
    create_session_via_api,
    new_file,
    open_ide,
    type_in_editor,
    wait_for_terminal_text,
)

pytestmark = [pytest.mark.browser, pytest.mark.docker, pytest.mark.django_db(transaction=True)]

ENGINE = docker.from_env()


def _write_from_terminal_side(session_id: str, path: str, text: str) -> None:
    container = next(c for c in ENGINE.containers.list() if c.name.endswith(f"-{session_id}"))
    result = container.exec_run(["sh", "-c", f"printf %s '{text}' > /workspace/{path}"], user="1000:1000")
    assert result.exit_code == 0, result.output


def test_a_save_conflict_offers_to_compare_and_choose(signed_in, daphne_server, console):
    page = signed_in
    session_id = create_session_via_api(page, daphne_server.url)
    open_ide(page, daphne_server.url, session_id)
    new_file(page, "notes.txt")
    page.wait_for_selector("[data-testid=editor-tab][data-path='notes.txt']")
    type_in_editor(page, "mine\n")
    _write_from_terminal_side(session_id, "notes.txt", "theirs, newer\n")
    page.keyboard.press("Control+s")
    dialog = page.locator("[data-testid=dialog]")
    dialog.wait_for()
    assert "changed since you opened it" in dialog.inner_text()
    dialog.locator("[data-choice=compare]").click()
    page.wait_for_selector("[data-testid=diff-view]")
    page.screenshot(path="test-artifacts/ide-conflict.png")
    page.click("[data-testid=diff-view] button:has-text('Keep mine')")
    page.wait_for_selector("[data-testid=editor-tab][data-path='notes.txt']:not(.dirty)")
    response = page.request.get(
        f"{daphne_server.url}/api/vibecode/sessions/{session_id}/files/content?path=notes.txt"
    )
    assert response.json()["content"] == "mine\n"
    # The only console error is the browser noting the 409 we provoked.
    assert console.unexpected("409") == []


def test_a_failed_run_shows_its_exit_code_and_errors(signed_in, daphne_server, console):
    page = signed_in
    open_ide(page, daphne_server.url, create_session_via_api(page, daphne_server.url))
    new_file(page, "fail.py")
    page.wait_for_selector("[data-testid=editor-tab][data-path='fail.py']")
    type_in_editor(page, 'import sys\nprint("about to fail")\nsys.exit("something broke")\n')
    page.click("[data-testid=run]")
    page.wait_for_selector("[data-testid=output-summary].failed", timeout=30000)
    assert "exit code 1" in page.locator("[data-testid=output-summary]").inner_text()
    output = page.locator("[data-testid=output]").inner_text()
    assert "about to fail" in output and "something broke" in output
    assert console.errors == []


def test_a_refused_path_shows_a_readable_message(signed_in, daphne_server, console):
    page = signed_in
    open_ide(page, daphne_server.url, create_session_via_api(page, daphne_server.url))
    new_file(page, "../escape.py")
    toast = page.locator("[data-testid=toasts] .toast-error")
    toast.wait_for()
    assert "leaves the workspace" in toast.inner_text()
    # Still usable: a normal file works right after.
    new_file(page, "fine.py")
    page.wait_for_selector("[data-testid=editor-tab][data-path='fine.py']")
    assert console.unexpected("400") == []


def test_the_terminal_reconnects_by_itself_after_the_server_goes_away(
    signed_in, daphne_server, daphne_env, console, tmp_path
):
    page = signed_in
    session_id = create_session_via_api(page, daphne_server.url)
    # A server of its own, so that it can be stopped and started on the same address.
    own = Daphne(daphne_env, log_path=tmp_path / "own.log")
    page.context.add_cookies(
        [
            {**cookie, "domain": "127.0.0.1"}
            for cookie in page.context.cookies()
            if cookie["domain"] == "127.0.0.1"
        ]
    )
    try:
        open_ide(page, own.url, session_id)
        page.click("[data-testid=terminal] .xterm-screen")
        page.keyboard.type("export MARK=still-here; echo SET-$MARK\n")
        wait_for_terminal_text(page, "SET-still-here")
        own.stop()
        page.wait_for_function(
            # An arrow function: a bare expression would be eval()ed, which the CSP refuses.
            "() => document.querySelector('[data-testid=status-connection]')"
            ".textContent.includes('reconnecting')",
            timeout=10000,
        )
        time.sleep(1)
        own = Daphne(daphne_env, log_path=tmp_path / "own.log", port=own.port)
        page.wait_for_function(
            "() => document.querySelector('[data-testid=status-connection]')"
            ".textContent === 'terminal: connected'",
            timeout=20000,
        )
        page.click("[data-testid=terminal] .xterm-screen")
        page.keyboard.type("echo $MARK-again\n")
        wait_for_terminal_text(page, "still-here-again")
    finally:
        own.stop()
    # While the server was down the browser logged failed connections; nothing else.
    assert console.unexpected("WebSocket", "ERR_CONNECTION_REFUSED") == []
