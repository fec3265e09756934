"""Run in a real Chromium: Ctrl+Enter inside Monaco runs the file, output streams into the Output
panel while the program runs, the input line reaches input(), Stop (button or Shift+F5) ends it,
and a reload reattaches to a run still going. The programs wait on stdin where a test needs a run
still going, so what is asserted never depends on timing."""

from __future__ import annotations

import pytest

from tests.conftest import ARTIFACTS
from tests.e2e.conftest import create_session_via_api, new_file, open_ide, type_in_editor

pytestmark = [pytest.mark.browser, pytest.mark.docker, pytest.mark.django_db(transaction=True)]

WAIT_MS = 60000

ASK = 'print("ready")\nname = input("name? ")\nprint(f"hello {name}")\n'
# A line a second for 20 s, then it waits for input: it never ends on its own. (No indented
# block: Monaco would indent the lines typed after one.)
TICKS = "import time\nfor i in range(1, 21): print(f'tick {i}'); time.sleep(1)\ninput()\n"


def output_has(page, text: str) -> None:
    page.wait_for_function(
        "(text) => document.querySelector('[data-testid=output]').textContent.includes(text)",
        arg=text,
        timeout=WAIT_MS,
    )


def summary_is(page, state: str) -> None:
    page.wait_for_selector(f"[data-testid=output-summary].{state}", timeout=WAIT_MS)


def write_program(page, name: str, program: str) -> None:
    new_file(page, name)
    page.wait_for_selector(f"[data-testid=editor-tab][data-path='{name}']")
    type_in_editor(page, program)
    assert page.evaluate("() => window.monaco.editor.getEditors()[0].getValue()") == program


def test_ctrl_enter_in_the_editor_runs_the_file_and_stdin_reaches_input(signed_in, daphne_server, console):
    page = signed_in
    open_ide(page, daphne_server.url, create_session_via_api(page, daphne_server.url, "run-keys"))
    write_program(page, "ask.py", ASK)
    page.click("[data-testid=editor] .view-lines")
    page.keyboard.press("Control+Enter")
    output_has(page, "name? ")
    # Monaco did not take the key for itself: no line was inserted, and the file was saved first.
    value = page.evaluate("() => window.monaco.editor.getEditors()[0].getValue()")
    assert value == ASK
    summary_is(page, "running")
    assert page.locator("[data-testid=run-stop]").is_visible()
    page.fill("[data-testid=run-input]", "Ada")
    page.press("[data-testid=run-input]", "Enter")
    summary_is(page, "ok")
    output_has(page, "hello Ada")
    assert "exit code 0" in page.locator("[data-testid=output-summary]").inner_text()
    assert "peak memory" in page.locator("[data-testid=output-summary]").inner_text()
    assert page.locator("[data-testid=run-stop]").is_hidden()
    assert page.locator("[data-testid=run-input-form]").is_hidden()
    assert console.unexpected() == []


def test_output_appears_line_by_line_while_running_and_stop_ends_it(signed_in, daphne_server, console):
    page = signed_in
    open_ide(page, daphne_server.url, create_session_via_api(page, daphne_server.url, "run-ticks"))
    write_program(page, "ticks.py", TICKS)
    page.click("[data-testid=run]")
    # The first lines are on screen while the run is still going (Stop is offered).
    page.wait_for_function(
        """() => {
             const text = document.querySelector('[data-testid=output]').textContent;
             const summary = document.querySelector('[data-testid=output-summary]');
             return text.includes('tick 2') && summary.classList.contains('running')
               && !document.querySelector('[data-testid=run-stop]').hidden;
           }""",
        timeout=WAIT_MS,
    )
    page.screenshot(path=str(ARTIFACTS / "ide-run-streaming.png"))
    page.click("[data-testid=run-stop]")
    summary_is(page, "failed")
    assert "stopped" in page.locator("[data-testid=output-summary]").inner_text()
    assert page.locator("[data-testid=run-stop]").is_hidden()
    # Nothing is left running in the session.
    runs = page.evaluate(
        "async (base) => (await (await fetch(base)).json()).runs",
        f"/api/vibecode/sessions/{page.url.rsplit('/', 1)[-1]}/runs",
    )
    assert [run["running"] for run in runs] == [False]
    assert console.unexpected() == []


def test_a_reload_reattaches_to_a_run_still_going_and_shift_f5_stops_it(signed_in, daphne_server, console):
    page = signed_in
    session_id = create_session_via_api(page, daphne_server.url, "run-reload")
    open_ide(page, daphne_server.url, session_id)
    write_program(page, "ticks.py", TICKS)
    page.click("[data-testid=editor] .view-lines")
    page.keyboard.press("F5")
    output_has(page, "tick 1")
    page.reload()
    # Attached, not visible: the reattach below shows the Output panel, which hides the terminal,
    # and on a busy machine it may do so before a visibility check ever sees the terminal.
    page.wait_for_selector("[data-testid=terminal] .xterm-rows", state="attached", timeout=WAIT_MS)
    # The panel reattached: the earlier output is replayed and the run is still offered a Stop.
    output_has(page, "tick 1")
    summary_is(page, "running")
    assert page.locator("[data-testid=run-stop]").is_visible()
    page.click("[data-testid=output]")
    page.keyboard.press("Shift+F5")
    summary_is(page, "failed")
    assert "stopped" in page.locator("[data-testid=output-summary]").inner_text()
    assert console.unexpected() == []
