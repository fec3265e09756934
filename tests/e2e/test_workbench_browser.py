"""The workbench in Chromium: tabs, cursor and terminals come back after a reload and in another
browser; the settings dialog changes the editor live and for good; a dirty tab asks before it
closes; the active file can be revealed in the explorer.

Every wait is for a condition (the server's stored state, the page's DOM or Monaco's own state),
never for a fixed time."""

from __future__ import annotations

import time

import docker
import pytest

from accounts_app.models import EditorSettings
from sessions_app.models import WorkbenchState
from tests.conftest import PASSWORD
from tests.e2e.conftest import create_session_via_api, csrf, open_ide, type_in_editor, wait_for_terminal_text

pytestmark = [pytest.mark.browser, pytest.mark.docker, pytest.mark.django_db(transaction=True)]

ENGINE = docker.from_env()

A_PY = "".join(f"a = {i}\n" for i in range(5))
B_PY = "".join(f"b = {i}\n" for i in range(10))

# Scripts for expect_value: what the page shows now.
TAB_PATHS = (
    "() => [...document.querySelectorAll('[data-testid=editor-tab]')].map((t) => t.dataset.path).join()"
)
ACTIVE_TAB = "() => (document.querySelector('[data-testid=editor-tab].active') || {dataset: {}}).dataset.path"
CURSOR_LINE = """() => {
  const editor = window.monaco && monaco.editor.getEditors()[0];
  return editor && editor.getPosition() && editor.getPosition().lineNumber;
}"""
TERMINAL_IDS = (
    "() => [...document.querySelectorAll('[data-testid=terminal]')].map((t) => t.dataset.terminalId).join()"
)
SHOWN_TERMINAL = """() => {
  const shown = document.querySelector('[data-testid=terminal]:not([hidden])');
  return shown && shown.dataset.terminalId;
}"""
STATUS = "() => document.querySelector('[data-testid=status-{}]').innerText"


def poll(condition, *, timeout: float = 30.0, what: str = "a condition") -> None:
    """Wait until ``condition()`` is true (it reads the database: no request, no rate limit)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def stored_state(session_id: str) -> dict:
    row = WorkbenchState.objects.filter(session__public_id=session_id).first()
    return row.state if row else {}


def write_file(page, base_url: str, session_id: str, path: str, content: str) -> None:
    base = f"{base_url}/api/vibecode/sessions/{session_id}"
    headers = {"X-CSRFToken": csrf(page)}
    if "/" in path:
        parent = path.rsplit("/", 1)[0]
        response = page.request.post(
            f"{base}/files", data={"path": parent, "type": "directory"}, headers=headers
        )
        assert response.status in (201, 409), response.text()
    response = page.request.put(
        f"{base}/files/content", data={"path": path, "content": content}, headers=headers
    )
    assert response.status in (200, 201), response.text()


def read_in_sandbox(session_id: str, path: str) -> str:
    """The file as it is on the workspace's disk (no API call: no rate limit while polling)."""
    container = next(c for c in ENGINE.containers.list() if c.name.endswith(f"-{session_id}"))
    result = container.exec_run(["cat", f"/workspace/{path}"], user="1000:1000")
    return result.output.decode() if result.exit_code == 0 else ""


def open_from_tree(page, path: str) -> None:
    parts = path.split("/")
    for i in range(1, len(parts) + 1):
        row = page.locator(f"[data-testid=tree] .node[data-path='{'/'.join(parts[:i])}'] > .row")
        row.wait_for(timeout=30000)
        if i < len(parts):
            # A folder: open it unless it already is.
            if "▸" in row.locator(".twisty").inner_text():
                row.click()
        else:
            row.click()
    page.wait_for_selector(f"[data-testid=editor-tab][data-path='{path}'].active", timeout=30000)


def expect_value(page, script: str, value, timeout: float = 30000) -> None:
    page.wait_for_function(f"(expected) => ({script})() === expected", arg=value, timeout=timeout)


def expect_workbench(page) -> None:
    """The page shows the workbench the first test left: two tabs, b.py active on line 4,
    terminals 1 and 2 with 2 shown, and terminal 2 is the same shell as before."""
    expect_value(page, TAB_PATHS, "a.py,src/b.py")
    expect_value(page, ACTIVE_TAB, "src/b.py")
    expect_value(page, CURSOR_LINE, 4)
    expect_value(page, TERMINAL_IDS, "1,2")
    expect_value(page, SHOWN_TERMINAL, "2")
    wait_for_terminal_text(page, "marker-42", timeout=30000)


def test_tabs_cursor_and_terminals_come_back_after_a_reload_and_in_another_browser(
    signed_in, daphne_server, console, browser
):
    page = signed_in
    url = daphne_server.url
    session_id = create_session_via_api(page, url)
    write_file(page, url, session_id, "a.py", A_PY)
    write_file(page, url, session_id, "src/b.py", B_PY)
    open_ide(page, url, session_id)

    open_from_tree(page, "a.py")
    open_from_tree(page, "src/b.py")
    page.click("[data-testid=editor] .view-lines")
    page.keyboard.press("Control+Home")
    for _ in range(3):
        page.keyboard.press("ArrowDown")
    expect_value(page, CURSOR_LINE, 4)

    page.click("[data-testid=new-terminal]")
    expect_value(page, SHOWN_TERMINAL, "2")
    wait_for_terminal_text(page, "$", timeout=30000)
    page.locator("[data-testid=terminal]:not([hidden]) .xterm").click()
    page.keyboard.type("echo marker-$((6*7))\n")
    wait_for_terminal_text(page, "marker-42", timeout=30000)

    # The page saves by itself (debounced): wait until the server has it all.
    def saved() -> bool:
        state = stored_state(session_id)
        tabs = {tab["path"]: tab for tab in state.get("tabs", [])}
        return (
            list(tabs) == ["a.py", "src/b.py"]
            and state.get("active") == "src/b.py"
            and tabs["src/b.py"]["line"] == 4
            and state.get("terminals") == ["1", "2"]
            and state.get("active_terminal") == "2"
        )

    poll(saved, what="the workbench state to be saved")

    page.reload()
    page.wait_for_selector("[data-testid=terminal]:not([hidden]) .xterm-rows", timeout=30000)
    expect_workbench(page)

    # Another browser (no shared storage), same user: the same workbench.
    other = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        second = other.new_page()
        second.goto(url + "/login")
        second.fill("input[name=username]", "alice")
        second.fill("input[name=password]", PASSWORD)
        second.click("button[type=submit]")
        second.wait_for_url(url + "/")
        second.goto(f"{url}/ide/{session_id}")
        second.wait_for_selector("[data-testid=terminal]:not([hidden]) .xterm-rows", timeout=30000)
        expect_workbench(second)
    finally:
        other.close()
    assert console.errors == []


def test_settings_apply_live_and_persist_a_dirty_tab_asks_and_reveal_finds_the_file(
    signed_in, daphne_server, console
):
    page = signed_in
    url = daphne_server.url
    session_id = create_session_via_api(page, url)
    write_file(page, url, session_id, "a.py", A_PY)
    write_file(page, url, session_id, "src/deep/c.py", B_PY)
    # A workbench saved elsewhere: the nested file is open, its folders in the tree are not.
    response = page.request.put(
        f"{url}/api/vibecode/sessions/{session_id}/workbench",
        data={"tabs": [{"path": "src/deep/c.py", "line": 2}], "active": "src/deep/c.py"},
        headers={"X-CSRFToken": csrf(page)},
    )
    assert response.status == 200, response.text()
    open_ide(page, url, session_id)
    page.wait_for_selector("[data-testid=editor-tab][data-path='src/deep/c.py'].active", timeout=30000)

    # The status bar: language mode and indentation.
    status_indent = page.locator("[data-testid=status-indent]")
    expect_value(page, STATUS.format("language"), "Python")
    expect_value(page, STATUS.format("indent"), "Spaces: 4")

    # Reveal in explorer: the folders open and the file is selected.
    assert page.locator("[data-testid=tree] .node[data-path='src/deep/c.py']").count() == 0
    page.click("[data-testid=reveal-active]")
    page.wait_for_selector(
        "[data-testid=tree] .node[data-path='src/deep/c.py'] > .row.selected", timeout=30000
    )

    # Settings: clicking the indentation opens the dialog; changes apply live to the open editor.
    status_indent.click()
    dialog = page.locator("[data-testid=settings-dialog]")
    dialog.wait_for()
    page.fill("[data-testid=setting-tab_size]", "2")
    page.keyboard.press("Tab")  # commits the number (its change event)
    page.check("[data-testid=setting-minimap]")
    tab_size = "() => monaco.editor.getEditors()[0].getModel().getOptions().tabSize"
    minimap = "() => monaco.editor.getEditors()[0].getOption(monaco.editor.EditorOption.minimap).enabled"
    expect_value(page, tab_size, 2)
    expect_value(page, minimap, True)
    expect_value(page, STATUS.format("indent"), "Spaces: 2")
    # Esc closes the dialog and gives the focus back to what opened it.
    page.keyboard.press("Escape")
    page.wait_for_function("() => !document.querySelector('[data-testid=settings-dialog]')")
    page.wait_for_function("() => document.activeElement && document.activeElement.id === 'status-indent'")
    poll(
        lambda: EditorSettings.objects.filter(user__username="alice", tab_size=2, minimap=True).exists(),
        what="the settings to be saved",
    )

    # They persist: after a reload, a file opened fresh gets them too.
    page.reload()
    page.wait_for_selector("[data-testid=editor-tab][data-path='src/deep/c.py'].active", timeout=30000)
    open_from_tree(page, "a.py")
    expect_value(page, tab_size, 2)
    expect_value(page, minimap, True)
    expect_value(page, STATUS.format("indent"), "Spaces: 2")

    # Closing a tab with unsaved changes asks first (the app's dialog): Cancel keeps it...
    type_in_editor(page, "changed = True\n")
    tab = page.locator("[data-testid=editor-tab][data-path='a.py']")
    page.wait_for_selector("[data-testid=editor-tab][data-path='a.py'].dirty")
    tab.locator(".tab-close").click()
    ask = page.locator("[data-testid=dialog]")
    ask.wait_for()
    assert "Unsaved changes" in ask.inner_text()
    ask.locator("[data-choice=cancel]").click()
    page.wait_for_function("() => !document.querySelector('[data-testid=dialog]').open")
    assert tab.count() == 1
    # ...and "Don't save" closes it with the file untouched.
    tab.locator(".tab-close").click()
    ask.wait_for()
    ask.locator("[data-choice=discard]").click()
    page.wait_for_selector("[data-testid=editor-tab][data-path='a.py']", state="detached")
    content = page.request.get(f"{url}/api/vibecode/sessions/{session_id}/files/content?path=a.py").json()
    assert content["content"] == A_PY

    # Auto save after a delay (off by default): an edit reaches the disk without Ctrl+S.
    page.click("[data-testid=settings-open]")
    page.select_option("[data-testid=setting-autosave]", "afterDelay")
    page.keyboard.press("Escape")
    page.wait_for_function("() => !document.querySelector('[data-testid=settings-dialog]')")
    poll(
        lambda: EditorSettings.objects.filter(user__username="alice", autosave="afterDelay").exists(),
        what="autosave to be saved",
    )
    open_from_tree(page, "a.py")
    type_in_editor(page, "saved = 'by itself'\n")
    poll(lambda: read_in_sandbox(session_id, "a.py") == "saved = 'by itself'\n", what="the autosave")
    page.wait_for_selector("[data-testid=editor-tab][data-path='a.py']:not(.dirty)", timeout=30000)
    assert console.errors == []
