"""The terminal in a real Chromium, as a user drives it: the mouse wheel scrolls back through the
scrollback, Ctrl+F finds and selects, and a reload keeps the same shell, its scrollback (replayed
by the sandbox's PTY host) and a full-screen program running in it.

Deterministic under load: every step waits for a condition (xterm.js's own buffer, read through
the Terminal the page exposes on its element), with generous timeouts and no fixed sleeps. A
wheel step that the page has not applied yet is simply followed by another; the test only ever
asserts where the viewport ended up.
"""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.conftest import ARTIFACTS
from tests.e2e.conftest import create_session_via_api, open_ide, wait_for_terminal_text

pytestmark = [pytest.mark.browser, pytest.mark.docker, pytest.mark.django_db(transaction=True)]

WAIT_MS = 30000
TERMINAL = "[data-testid=terminal]:not([hidden])"

# Where line `text` is in the active terminal's buffer, and where the viewport is.
STATE = """(text) => {
  const term = document.querySelector('[data-testid=terminal]:not([hidden])').__vibecodeTerminal;
  const buffer = term.buffer.active;
  let index = -1;
  for (let i = 0; i < buffer.length; i++) {
    if (buffer.getLine(i).translateToString(true) === text) { index = i; break; }
  }
  return { index, viewportY: buffer.viewportY, baseY: buffer.baseY, rows: term.rows, type: buffer.type };
}"""

BUFFER_HAS = """(text) => {
  const term = document.querySelector('[data-testid=terminal]:not([hidden])').__vibecodeTerminal;
  const buffer = term.buffer.active;
  for (let i = 0; i < buffer.length; i++) {
    if (buffer.getLine(i).translateToString(true).includes(text)) return true;
  }
  return false;
}"""


def state(page, line: str) -> dict:
    return page.evaluate(STATE, line)


def wheel_until(page, done, step: int) -> dict:
    """Wheel over the terminal, a few lines at a time, until ``done(state)``; each step waits for
    the viewport to move (or tries again), so none is lost or counted twice."""
    box = page.locator(f"{TERMINAL} .xterm-screen").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    deadline = time.monotonic() + 60
    while True:
        now = state(page, "line-1000")
        if done(now):
            return now
        assert time.monotonic() < deadline, f"the wheel did not get there: {now}"
        page.mouse.wheel(0, step)
        try:
            page.wait_for_function(
                "([y]) => document.querySelector('[data-testid=terminal]:not([hidden])')"
                ".__vibecodeTerminal.buffer.active.viewportY !== y",
                arg=[now["viewportY"]],
                timeout=5000,
            )
        except PlaywrightTimeout:
            pass  # not applied yet (or at an end): look again, wheel again


def test_the_wheel_scrolls_back_and_ctrl_f_finds_after_a_reload(signed_in, daphne_server, console):
    page = signed_in
    url = daphne_server.url
    session_id = create_session_via_api(page, url, "scrollback")
    open_ide(page, url, session_id)

    # A variable in the shell, and 2000 numbered lines; the marker is computed by the shell, so it
    # shows only once the output is there. The output reaches xterm.js as it was written: all of
    # it is in xterm.js's scrollback at once.
    page.click(f"{TERMINAL} .xterm-screen")
    page.keyboard.type("export VC_MARK=kept-$((6*7)); seq -f line-%g 1 2000; echo SEQ-$((6*7))-DONE\n")
    wait_for_terminal_text(page, "SEQ-42-DONE", timeout=WAIT_MS)
    page.wait_for_function(BUFFER_HAS, arg="line-1", timeout=WAIT_MS)
    live = state(page, "line-1000")
    assert live["type"] == "normal" and live["index"] >= 0 and live["baseY"] >= 2000 - live["rows"], live

    # A reload reattaches: the same screen, and the whole scrollback, replayed.
    page.reload()
    page.wait_for_selector(f"{TERMINAL} .xterm-rows", timeout=WAIT_MS)
    wait_for_terminal_text(page, "SEQ-42-DONE", timeout=WAIT_MS)
    page.wait_for_function(BUFFER_HAS, arg="line-1", timeout=WAIT_MS)
    start = state(page, "line-1000")
    assert start["type"] == "normal" and start["index"] >= 0, start
    assert start["viewportY"] == start["baseY"] >= 2000 - start["rows"], start

    # The wheel scrolls back through the scrollback (not through bash's history) to line-1000.
    def line_1000_visible(s: dict) -> bool:
        return s["viewportY"] <= s["index"] < s["viewportY"] + s["rows"]

    there = wheel_until(page, line_1000_visible, step=-1200)
    assert there["viewportY"] < there["baseY"], there
    wait_for_terminal_text(page, "line-1000", timeout=WAIT_MS)  # on screen, in the rendered rows
    page.screenshot(path=str(ARTIFACTS / "ide-terminal-scrollback.png"))

    # And back down to the bottom.
    wheel_until(page, lambda s: s["viewportY"] == s["baseY"], step=2400)
    wait_for_terminal_text(page, "SEQ-42-DONE", timeout=WAIT_MS)

    # Ctrl+F opens the find box, with the keyboard in it.
    page.click(f"{TERMINAL} .xterm-screen")
    page.keyboard.press("Control+f")
    page.locator("[data-testid=terminal-find-input]").wait_for(state="visible", timeout=WAIT_MS)
    page.wait_for_function("() => document.activeElement?.dataset.testid === 'terminal-find-input'")
    # line-150 is found: selected, and scrolled into view.
    page.keyboard.type("line-150")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=terminal]:not([hidden])')"
        ".__vibecodeTerminal.getSelection() === 'line-150'",
        timeout=WAIT_MS,
    )
    wait_for_terminal_text(page, "line-150", timeout=WAIT_MS)
    page.screenshot(path=str(ARTIFACTS / "ide-terminal-find.png"))

    # Esc closes the box and gives the keyboard back to the terminal: the same shell as before
    # the reload still has its variable.
    page.keyboard.press("Escape")
    page.locator("[data-testid=terminal-find]").wait_for(state="hidden", timeout=WAIT_MS)
    page.wait_for_function(f"() => document.querySelector('{TERMINAL}').contains(document.activeElement)")
    page.wait_for_function("() => !document.querySelector('.xterm-find-result-decoration')", timeout=WAIT_MS)
    page.keyboard.type('echo "MARK=$VC_MARK"\n')
    wait_for_terminal_text(page, "MARK=kept-42", timeout=WAIT_MS)

    assert page.locator("[data-testid=status-connection]").inner_text() == "terminal: connected"
    assert console.unexpected() == []


def test_less_survives_a_reload_with_its_screen(signed_in, daphne_server, console):
    page = signed_in
    url = daphne_server.url
    session_id = create_session_via_api(page, url, "pager")
    open_ide(page, url, session_id)

    page.click(f"{TERMINAL} .xterm-screen")
    page.keyboard.type("seq -f row-%g 1 500 > rows.txt; less rows.txt\n")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=terminal]:not([hidden])')"
        ".__vibecodeTerminal.buffer.active.type === 'alternate'",
        timeout=WAIT_MS,
    )
    wait_for_terminal_text(page, "row-1", timeout=WAIT_MS)
    page.keyboard.type("/row-250\n")  # less scrolls to it
    wait_for_terminal_text(page, "row-251", timeout=WAIT_MS)

    # The reloaded page gets less's screen back: the alternate screen, at the same place.
    page.reload()
    page.wait_for_selector(f"{TERMINAL} .xterm-rows", timeout=WAIT_MS)
    page.wait_for_function(
        "() => document.querySelector('[data-testid=terminal]:not([hidden])')"
        ".__vibecodeTerminal?.buffer.active.type === 'alternate'",
        timeout=WAIT_MS,
    )
    wait_for_terminal_text(page, "row-251", timeout=WAIT_MS)
    page.screenshot(path=str(ARTIFACTS / "ide-terminal-less-after-reload.png"))

    # It is the same less: q quits it, back to the shell's own screen.
    page.click(f"{TERMINAL} .xterm-screen")
    page.keyboard.type("q")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=terminal]:not([hidden])')"
        ".__vibecodeTerminal.buffer.active.type === 'normal'",
        timeout=WAIT_MS,
    )
    page.keyboard.type("echo AFTER-$((6*7))\n")
    wait_for_terminal_text(page, "AFTER-42", timeout=WAIT_MS)
    assert console.unexpected() == []
