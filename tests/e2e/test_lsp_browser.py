"""Language intelligence in a real Chromium, with the real language servers in the sandbox
(pylsp, typescript-language-server) behind the real bridge: completion, hover, diagnostics (the
squiggle and the Problems panel), go to definition into another file, rename across files saved
on disk, a TypeScript type error, and a killed server that comes back. Makes docs/images/lsp.png.

Every wait is for a state (the status bar's data-state, Monaco's widgets, the files on disk),
never a fixed time. The issue's 2 s and 5 s are product goals: they are measured in the page from
the keystroke that causes them and asserted with a margin for a loaded 2-CPU machine."""

from __future__ import annotations

import shutil
import time

import docker
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

from tests.conftest import ARTIFACTS, REPO_ROOT
from tests.e2e.conftest import create_session_via_api, csrf, new_file, open_ide, wait_for_terminal_text
from tests.e2e.test_accessibility import serious_violations, set_scheme, use_axe

pytestmark = [pytest.mark.browser, pytest.mark.docker, pytest.mark.django_db(transaction=True)]

ENGINE = docker.from_env()
# Starting a server the first time in a new sandbox (docker exec, then pylsp or tsserver loading)
# on a busy machine: generous. Goals the issue sets are asserted separately.
START_MS = 90000
WAIT_MS = 30000
# The product goals, and how much slower a loaded test machine may be before the test fails.
DIAGNOSTIC_GOAL_S = 2.0
RESTART_GOAL_S = 5.0
MARGIN = 1.5

# The Problems list shows this many entries at most (static/vibecode/ide/problems.js).
PROBLEMS_SHOWN = 1000
MANY = 1100

UTIL_PY = '"""Helpers."""\n\n\ndef greet(name):\n    return f"hello {name}"\n'
MAIN_PY = "from util import greet\n\nprint(greet('ada'))\n"
RENAMED_MAIN_PY = "from util import welcome\n\nprint(welcome('ada'))\n"
# Where the cursor goes on `greet` in MAIN_PY's last line, and where its definition is.
GREET_USE = (3, 9)
GREET_DEFINITION_LINE = 4

# Scripts for the page: Monaco's main editor, and the time of a keystroke.
EDITOR = "window.monaco.editor.getEditors()[0]"
SET_CURSOR = f"""([line, column]) => {{
  const editor = {EDITOR};
  editor.setPosition({{ lineNumber: line, column }});
  editor.revealPositionInCenter({{ lineNumber: line, column }});
  editor.focus();
}}"""
# The page's clock when the next key goes down (before Monaco sees it).
MARK_NEXT_KEY = """() => {
  window.__keyAt = null;
  const mark = () => { window.__keyAt = performance.now(); };
  window.addEventListener('keydown', mark, { capture: true, once: true });
}"""
# The status bar item's states with their times (performance.now()), from now on.
WATCH_STATUS = """() => {
  const el = document.querySelector('[data-testid=status-lsp]');
  window.__lspStates = [[el.dataset.state, performance.now()]];
  new MutationObserver(() => {
    const last = window.__lspStates[window.__lspStates.length - 1][0];
    if (el.dataset.state !== last) window.__lspStates.push([el.dataset.state, performance.now()]);
  }).observe(el, { attributes: true, attributeFilter: ['data-state'] });
}"""


# --- helpers -------------------------------------------------------------------------------------


def put_file(page, base_url: str, session_id: str, path: str, content: str) -> None:
    response = page.request.put(
        f"{base_url}/api/vibecode/sessions/{session_id}/files/content",
        data={"path": path, "content": content},
        headers={"X-CSRFToken": csrf(page)},
    )
    assert response.status in (200, 201), response.text()


def get_file(page, base_url: str, session_id: str, path: str) -> str:
    response = page.request.get(f"{base_url}/api/vibecode/sessions/{session_id}/files/content?path={path}")
    assert response.status == 200, response.text()
    return response.json()["content"]


def read_in_sandbox(session_id: str, path: str) -> str:
    """The file on the workspace's disk, for polling without the API's rate limits."""
    container = next(c for c in ENGINE.containers.list() if c.name.endswith(f"-{session_id}"))
    result = container.exec_run(["cat", f"/workspace/{path}"], user="1000:1000")
    return result.output.decode() if result.exit_code == 0 else ""


def poll(condition, *, timeout: float = 30.0, what: str = "a condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def open_from_tree(page, path: str) -> None:
    page.locator(f"[data-testid=tree] .node[data-path='{path}'] > .row").click()
    expect(page.locator(f"[data-testid=editor-tab][data-path='{path}']")).to_have_class(
        "tab active", timeout=WAIT_MS
    )


def server_ready(page, language: str = "python", timeout: float = START_MS) -> None:
    status = page.locator("[data-testid=status-lsp]")
    expect(status).to_have_attribute("data-language", language, timeout=timeout)
    expect(status).to_have_attribute("data-state", "ready", timeout=timeout)


def set_cursor(page, line: int, column: int) -> None:
    page.evaluate(SET_CURSOR, [line, column])


def suggestion(page, label: str):
    return page.locator(".suggest-widget.visible .monaco-list-row", has_text=label).first


def expect_suggestion(page, label: str) -> None:
    """The suggest widget offers `label`. Typing a trigger character (.) opens it; should it not be
    open (the keystroke came while the server computed another answer), Ctrl+Space asks again."""
    try:
        expect(suggestion(page, label)).to_be_visible(timeout=15000)
    except AssertionError:
        page.keyboard.press("Escape")
        page.keyboard.press("Control+Space")
        expect(suggestion(page, label)).to_be_visible(timeout=WAIT_MS)


def problems(page):
    return page.locator("[data-testid=problem]")


def elapsed_since_key(page, condition: str) -> float:
    """Seconds from the marked keystroke until `condition` (a script) first held, in the page."""
    page.wait_for_function(
        f"""() => {{
             if (window.__doneAt == null && ({condition})()) window.__doneAt = performance.now();
             return window.__doneAt != null;
           }}""",
        polling="raf",
        timeout=WAIT_MS,
    )
    seconds = page.evaluate("() => (window.__doneAt - window.__keyAt) / 1000")
    page.evaluate("() => { window.__doneAt = null; }")
    return seconds


# --- tests ---------------------------------------------------------------------------------------


def test_python_completion_offers_a_module_member_and_hover_shows_documentation(
    signed_in, daphne_server, console
):
    page = signed_in
    url = daphne_server.url
    session_id = create_session_via_api(page, url, "lsp-python")
    open_ide(page, url, session_id)
    new_file(page, "main.py")
    expect(page.locator("[data-testid=editor-tab][data-path='main.py']")).to_have_class(
        "tab active", timeout=WAIT_MS
    )
    status = page.locator("[data-testid=status-lsp]")
    expect(status).to_be_visible(timeout=WAIT_MS)
    server_ready(page)
    expect(status).to_have_text("Python ✓")

    page.click("[data-testid=editor] .view-lines")
    # The first line as one input (Enter typed while suggestions for "os" show would take one).
    page.keyboard.insert_text("import os\n")
    page.keyboard.type("os.pa")
    expect_suggestion(page, "path")
    page.keyboard.press("Escape")

    # Hover over `print`: its documentation, from the server (jedi).
    page.keyboard.press("Control+a")
    page.keyboard.insert_text("import os\n\nprint(greeting, os.sep)\n")
    hover_at = page.evaluate(
        f"""() => {{
             const editor = {EDITOR};
             const box = editor.getDomNode().getBoundingClientRect();
             const at = editor.getScrolledVisiblePosition({{ lineNumber: 3, column: 3 }});
             return [box.left + at.left + 2, box.top + at.top + at.height / 2];
           }}"""
    )
    page.mouse.move(hover_at[0], hover_at[1])
    hover = page.locator(".monaco-hover:not(.hidden)", has_text="Prints the values")
    try:
        expect(hover).to_be_visible(timeout=WAIT_MS)
    except AssertionError:
        # The hover asked while the server still had the previous text: move off and back.
        page.mouse.move(5, 5)
        page.mouse.move(hover_at[0], hover_at[1])
        expect(hover).to_be_visible(timeout=WAIT_MS)
    page.mouse.move(5, 5)

    # An undefined name is a problem (pyflakes); with completion open, the README's picture.
    page.click("[data-testid=panel-problems]")
    entry = problems(page).filter(has_text="undefined name 'greeting'")
    expect(entry).to_have_count(1, timeout=WAIT_MS)
    expect(entry).to_have_attribute("data-path", "main.py")
    expect(entry).to_have_attribute("data-line", "3")
    expect(page.locator("[data-testid=problems-count]")).to_have_text("1")
    set_cursor(page, 4, 1)
    page.keyboard.type("os.pa")
    expect_suggestion(page, "path")
    page.screenshot(path=str(ARTIFACTS / "lsp.png"))
    shutil.copyfile(ARTIFACTS / "lsp.png", REPO_ROOT / "docs" / "images" / "lsp.png")
    page.keyboard.press("Escape")

    # Format document (Shift+Alt+F, on every platform): black, through the server.
    page.keyboard.press("Control+a")
    page.keyboard.insert_text("values=[1,2]\n")
    page.keyboard.press("Shift+Alt+f")
    page.wait_for_function(f"() => {EDITOR}.getValue() === 'values = [1, 2]\\n'", timeout=WAIT_MS)
    assert console.unexpected() == []


def test_a_syntax_error_shows_a_squiggle_and_a_problem_within_two_seconds(signed_in, daphne_server, console):
    page = signed_in
    url = daphne_server.url
    session_id = create_session_via_api(page, url, "lsp-syntax")
    put_file(page, url, session_id, "calc.py", "def total(values):\n    return sum(values)\n")
    put_file(page, url, session_id, "many.py", "".join(f"print(name_{n})\n" for n in range(MANY)))
    use_axe(page)
    open_ide(page, url, session_id)
    open_from_tree(page, "calc.py")
    server_ready(page)
    page.click("[data-testid=panel-problems]")
    expect(page.locator("[data-testid=problems-summary]")).to_have_text("No problems found.", timeout=WAIT_MS)
    # The server has the file (it answers about it) before the error is typed.
    expect(page.locator(".squiggly-error")).to_have_count(0)

    set_cursor(page, 2, 1)
    page.keyboard.press("End")
    page.evaluate(MARK_NEXT_KEY)
    page.keyboard.type(":")  # "return sum(values):" is invalid syntax
    seconds = elapsed_since_key(
        page,
        "() => document.querySelector('[data-testid=editor] .squiggly-error')"
        " && document.querySelector('[data-testid=problem][data-severity=error]')",
    )
    print(f"syntax error shown {seconds:.2f} s after the keystroke")
    assert seconds < DIAGNOSTIC_GOAL_S * MARGIN, f"{seconds:.2f} s"
    entry = problems(page).first
    expect(entry).to_have_attribute("data-path", "calc.py")
    expect(page.locator("[data-testid=problems-count]")).to_have_text("1")
    expect(page.locator("[data-testid=panel-problems]")).to_contain_text("1")

    # The panel with an entry reads well in both themes (axe: no serious or critical violation).
    for scheme in ("dark", "light"):
        set_scheme(page, scheme)
        assert serious_violations(page, f"problems-{scheme}") == [], scheme

    # Clicking the entry, or Enter on it, puts the cursor on the problem.
    set_cursor(page, 1, 1)
    entry.click()
    line = entry.get_attribute("data-line")
    column = entry.get_attribute("data-column")
    expect(page.locator("#status-cursor")).to_have_text(f"Ln {line}, Col {column}", timeout=WAIT_MS)
    set_cursor(page, 1, 1)
    page.keyboard.press("Control+Shift+M")  # from the editor to the Problems list, as in VS Code
    expect(entry).to_be_focused(timeout=WAIT_MS)
    page.keyboard.press("Enter")
    expect(page.locator("#status-cursor")).to_have_text(f"Ln {line}, Col {column}", timeout=WAIT_MS)

    # Fixed: the squiggle and the entry go.
    page.keyboard.press("End")
    page.keyboard.press("Backspace")
    expect(page.locator("[data-testid=editor] .squiggly-error")).to_have_count(0, timeout=WAIT_MS)
    expect(problems(page)).to_have_count(0, timeout=WAIT_MS)
    expect(page.locator("[data-testid=problems-count]")).to_have_text("")

    # A file with more problems than the list shows: the first ones, and the count of all.
    open_from_tree(page, "many.py")
    expect(page.locator("[data-testid=problems-count]")).to_have_text(str(MANY), timeout=WAIT_MS)
    expect(problems(page)).to_have_count(PROBLEMS_SHOWN)
    expect(page.locator("[data-testid=problems-summary]")).to_have_text(
        f"{MANY} errors, 0 warnings. The first {PROBLEMS_SHOWN} are listed."
    )
    assert console.unexpected() == []


def test_f12_opens_the_definition_in_another_file_and_f2_renames_it_in_both_files_on_disk(
    signed_in, daphne_server, console
):
    page = signed_in
    url = daphne_server.url
    session_id = create_session_via_api(page, url, "lsp-navigate")
    put_file(page, url, session_id, "util.py", UTIL_PY)
    put_file(page, url, session_id, "main.py", MAIN_PY)
    open_ide(page, url, session_id)
    open_from_tree(page, "main.py")
    server_ready(page)

    set_cursor(page, *GREET_USE)
    page.keyboard.press("F12")
    expect(page.locator("[data-testid=editor-tab][data-path='util.py']")).to_have_class(
        "tab active", timeout=WAIT_MS
    )
    expect(page.locator("#status-cursor")).to_contain_text(f"Ln {GREET_DEFINITION_LINE},", timeout=WAIT_MS)

    # Rename from main.py while util.py is open too... and then closed: one file through its tab,
    # the other read and saved with its etag.
    page.keyboard.press("Alt+w")
    expect(page.locator("[data-testid=editor-tab][data-path='util.py']")).to_have_count(0, timeout=WAIT_MS)
    expect(page.locator("[data-testid=editor-tab][data-path='main.py']")).to_have_class(
        "tab active", timeout=WAIT_MS
    )
    server_ready(page)
    set_cursor(page, *GREET_USE)
    page.keyboard.press("F2")
    rename_input = page.locator(".rename-box .rename-input")
    # Keys go to the box once it has the focus (before, they would edit the file and cancel it).
    expect(rename_input).to_be_focused(timeout=WAIT_MS)
    page.keyboard.press("Control+a")
    page.keyboard.type("welcome")
    page.keyboard.press("Enter")
    poll(
        lambda: (
            "def welcome(name)" in read_in_sandbox(session_id, "util.py")
            and "welcome('ada')" in read_in_sandbox(session_id, "main.py")
        ),
        timeout=WAIT_MS / 1000,
        what="the rename on disk",
    )
    assert "greet" not in get_file(page, url, session_id, "util.py")
    assert get_file(page, url, session_id, "main.py") == RENAMED_MAIN_PY
    # The open tab shows it and has nothing unsaved.
    expect(page.locator("[data-testid=editor-tab].dirty")).to_have_count(0, timeout=WAIT_MS)
    assert page.evaluate(f"() => {EDITOR}.getValue()") == RENAMED_MAIN_PY
    assert console.unexpected() == []


def test_a_typescript_type_error_is_a_diagnostic(signed_in, daphne_server, console):
    page = signed_in
    url = daphne_server.url
    session_id = create_session_via_api(page, url, "lsp-typescript")
    put_file(page, url, session_id, "app.ts", 'const count: number = "three";\nconsole.log(count);\n')
    open_ide(page, url, session_id)
    open_from_tree(page, "app.ts")
    server_ready(page, "typescript")
    expect(page.locator("[data-testid=status-lsp]")).to_have_text("TypeScript ✓")
    page.click("[data-testid=panel-problems]")
    entry = problems(page).filter(has_text="is not assignable to type 'number'")
    expect(entry).to_have_count(1, timeout=WAIT_MS)
    expect(entry).to_have_attribute("data-severity", "error")
    expect(entry).to_have_attribute("data-line", "1")
    expect(entry).to_contain_text("typescript")
    expect(page.locator("[data-testid=editor] .squiggly-error")).not_to_have_count(0, timeout=WAIT_MS)
    # Only the server's: Monaco's own TypeScript worker is off while the server works.
    page.wait_for_function(
        "() => monaco.editor.getModelMarkers({}).every((m) => m.owner === 'lsp')", timeout=WAIT_MS
    )
    assert console.unexpected() == []


def test_a_killed_server_comes_back_within_five_seconds_and_completion_works_again(
    signed_in, daphne_server, console
):
    page = signed_in
    url = daphne_server.url
    session_id = create_session_via_api(page, url, "lsp-restart")
    put_file(page, url, session_id, "main.py", "import os\n")
    open_ide(page, url, session_id)
    open_from_tree(page, "main.py")
    server_ready(page)

    page.evaluate(WATCH_STATUS)
    page.click("[data-testid=panel-terminals]")
    page.click("[data-testid=terminal] .xterm-screen")
    page.keyboard.type("pkill -f pylsp; echo killed-$((6*7))")
    page.evaluate(MARK_NEXT_KEY)
    page.keyboard.press("Enter")
    wait_for_terminal_text(page, "killed-42")
    page.wait_for_function(
        """() => {
             const states = window.__lspStates;
             const down = states.findIndex(([state, at]) => state !== 'ready' && at >= window.__keyAt);
             return down > 0 && states[states.length - 1][0] === 'ready';
           }""",
        timeout=START_MS,
    )
    states = page.evaluate(
        "() => window.__lspStates.map(([state, at]) => [state, (at - window.__keyAt) / 1000])"
    )
    print("status after the kill:", states)
    assert "restarting" in [state for state, _ in states]
    seconds = states[-1][1]
    assert seconds < RESTART_GOAL_S * MARGIN, f"back after {seconds:.2f} s"

    # The new server has the file again: completion works.
    set_cursor(page, 1, 10)
    page.keyboard.press("End")
    page.keyboard.insert_text("\n")
    page.keyboard.type("os.pa")
    try:
        expect_suggestion(page, "path")
    except PlaywrightTimeout:
        pytest.fail("no completion after the restart")
    assert console.unexpected() == []


def test_a_second_tab_takes_the_server_and_the_first_waits_until_it_is_edited(
    signed_in, daphne_server, console
):
    page = signed_in
    url = daphne_server.url
    session_id = create_session_via_api(page, url, "lsp-tabs")
    put_file(page, url, session_id, "main.py", "import os\n")
    open_ide(page, url, session_id)
    open_from_tree(page, "main.py")
    server_ready(page)

    # One server per language per workspace: the second tab's replaces the first's, and the
    # first does not take it back by itself (the tabs would fight).
    second = page.context.new_page()
    second_errors: list[str] = []
    second.on("console", lambda m: second_errors.append(m.text) if m.type == "error" else None)
    second.set_viewport_size({"width": 1280, "height": 800})
    open_ide(second, url, session_id)
    open_from_tree(second, "main.py")
    server_ready(second)
    status = page.locator("[data-testid=status-lsp]")
    expect(status).to_have_attribute("data-state", "off", timeout=WAIT_MS)
    expect(status).to_have_text("Python: in another tab")
    set_cursor(second, 1, 10)
    second.keyboard.press("End")
    second.keyboard.insert_text("\n")
    second.keyboard.type("os.pa")
    expect_suggestion(second, "path")
    second.keyboard.press("Escape")
    expect(second.locator("[data-testid=status-lsp]")).to_have_attribute("data-state", "ready")
    expect(status).to_have_attribute("data-state", "off")

    # An edit in the first tab takes it back; now the second waits.
    page.bring_to_front()
    set_cursor(page, 1, 10)
    page.keyboard.press("End")
    page.keyboard.insert_text("\n")
    server_ready(page)
    expect(second.locator("[data-testid=status-lsp]")).to_have_attribute("data-state", "off", timeout=WAIT_MS)
    page.keyboard.type("os.pa")
    expect_suggestion(page, "path")
    second.close()
    assert console.unexpected() == []
    assert second_errors == []
