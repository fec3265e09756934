"""The IDE and the pages from the keyboard, in a real Chromium: the explorer tree (arrows, Enter,
F2, Delete, Shift+F10 and its menu), the editor tabs (Ctrl+Tab, Ctrl+W, Alt+W, arrows), dialogs
(Esc gives the focus back), and the light/dark theme (the OS's unless the user chose one).

Every step waits for the state it expects (focus, attributes, elements): no sleeps."""

from __future__ import annotations

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.conftest import ARTIFACTS
from tests.e2e.conftest import create_session_via_api, csrf, open_ide, wait_for_terminal_text

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TIMEOUT = 30000

FOCUSED_PATH = "() => document.activeElement && document.activeElement.dataset.path || null"


def make_files(page, base_url: str, session_id: str, entries: list[tuple[str, str]]) -> None:
    for path, kind in entries:
        response = page.request.post(
            f"{base_url}/api/vibecode/sessions/{session_id}/files",
            data={"path": path, "type": kind},
            headers={"X-CSRFToken": csrf(page)},
        )
        assert response.status == 201, response.text()


def wait_focus(page, path: str) -> None:
    """The keyboard focus is on the tree item (or editor tab) for ``path``."""
    page.wait_for_function(
        "(path) => document.activeElement && document.activeElement.dataset.path === path",
        arg=path,
        timeout=TIMEOUT,
    )


def arrow_to(page, key: str, path: str, *, start: str) -> None:
    """Press ``key`` until the focus is on ``path``. The tree may redraw after a dialog closes
    (a refresh racing the key): then the focus is put back on ``start`` and the key pressed again."""
    for _ in range(5):
        page.keyboard.press(key)
        try:
            page.wait_for_function(
                "(path) => document.activeElement && document.activeElement.dataset.path === path",
                arg=path,
                timeout=5000,
            )
            return
        except PlaywrightTimeoutError:
            page.focus(f"[data-testid=tree-item][data-path='{start}']")
    wait_focus(page, path)


def wait_attr(page, selector: str, name: str, value: str) -> None:
    page.wait_for_function(
        "([selector, name, value]) => { const el = document.querySelector(selector);"
        " return !!el && el.getAttribute(name) === value; }",
        arg=[selector, name, value],
        timeout=TIMEOUT,
    )


def item(path: str) -> str:
    return f"[data-testid=tree-item][data-path='{path}']"


def tab(path: str) -> str:
    return f"[data-testid=editor-tab][data-path='{path}']"


def visible_paths(page) -> list[str]:
    return page.evaluate(
        "() => [...document.querySelectorAll('[data-testid=tree-item]')].map((n) => n.dataset.path)"
    )


def open_workspace(page, url: str, files: list[tuple[str, str]]) -> str:
    session_id = create_session_via_api(page, url, "keys")
    make_files(page, url, session_id, files)
    open_ide(page, url, session_id)
    page.wait_for_selector(item(files[-1][0].split("/")[0]), timeout=TIMEOUT)
    return session_id


@pytest.mark.docker
def test_the_tree_is_usable_with_the_keyboard(signed_in, daphne_server, console):
    page = signed_in
    url = daphne_server.url
    open_workspace(
        page, url, [("pkg", "directory"), ("pkg/inner.py", "file"), ("a.py", "file"), ("b.txt", "file")]
    )
    assert page.get_attribute("[data-testid=tree]", "role") == "tree"
    assert visible_paths(page) == ["pkg", "a.py", "b.txt"]
    # One tab stop in the tree (roving tabindex): the first item. Tab into it from the toolbar.
    assert page.locator("[data-testid=tree-item][tabindex='0']").count() == 1
    page.focus("[data-testid=download-all]")
    page.keyboard.press("Tab")
    wait_focus(page, "pkg")
    assert page.get_attribute(item("pkg"), "role") == "treeitem"
    assert page.get_attribute(item("pkg"), "aria-expanded") == "false"
    # The focus is visible: a ring on the focused item's row.
    assert page.evaluate(
        "() => document.activeElement.matches(':focus-visible')"
        " && getComputedStyle(document.activeElement.querySelector('.row')).outlineStyle !== 'none'"
    )

    # Right expands, Right again enters, Left goes to the parent, Left again collapses.
    page.keyboard.press("ArrowRight")
    wait_attr(page, item("pkg"), "aria-expanded", "true")
    page.wait_for_selector(f"{item('pkg')} [role=group] {item('pkg/inner.py')}", timeout=TIMEOUT)
    page.keyboard.press("ArrowRight")
    wait_focus(page, "pkg/inner.py")
    assert page.get_attribute(item("pkg/inner.py"), "aria-selected") == "true"
    assert page.get_attribute(item("pkg"), "aria-selected") == "false"
    page.keyboard.press("ArrowLeft")
    wait_focus(page, "pkg")
    page.keyboard.press("ArrowLeft")
    wait_attr(page, item("pkg"), "aria-expanded", "false")
    page.wait_for_selector(item("pkg/inner.py"), state="detached", timeout=TIMEOUT)

    # Down, End, Home; Enter opens a file in the editor.
    page.keyboard.press("End")
    wait_focus(page, "b.txt")
    page.keyboard.press("Home")
    wait_focus(page, "pkg")
    page.keyboard.press("ArrowDown")
    wait_focus(page, "a.py")
    assert page.locator("[data-testid=tree-item][tabindex='0']").count() == 1
    page.keyboard.press("Enter")
    page.wait_for_selector(f"{tab('a.py')}[aria-selected=true]", timeout=TIMEOUT)

    # F2 renames the focused item; the focus comes back to it under its new name.
    page.focus(item("a.py"))
    page.keyboard.press("F2")
    page.wait_for_selector("#dialog[open] [data-testid=dialog-input]", timeout=TIMEOUT)
    assert page.input_value("[data-testid=dialog-input]") == "a.py"
    page.fill("[data-testid=dialog-input]", "renamed.py")
    page.keyboard.press("Enter")
    wait_focus(page, "renamed.py")
    assert visible_paths(page) == ["pkg", "b.txt", "renamed.py"]
    page.wait_for_selector(tab("renamed.py"), timeout=TIMEOUT)

    # Shift+F10 opens the context menu at the item, with the focus on its first entry; arrows move,
    # Esc closes it and gives the focus back to the item.
    page.keyboard.press("Shift+F10")
    page.wait_for_selector("[data-testid=context-menu][role=menu]", timeout=TIMEOUT)
    page.wait_for_function("() => document.activeElement.textContent === 'New file…'", timeout=TIMEOUT)
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    page.wait_for_function("() => document.activeElement.textContent === 'Rename…'", timeout=TIMEOUT)
    page.keyboard.press("ArrowUp")
    page.wait_for_function("() => document.activeElement.textContent === 'New folder…'", timeout=TIMEOUT)
    page.screenshot(path=str(ARTIFACTS / "keyboard-context-menu.png"))
    page.keyboard.press("Escape")
    page.wait_for_selector("[data-testid=context-menu]", state="detached", timeout=TIMEOUT)
    wait_focus(page, "renamed.py")

    # The ContextMenu key too; Enter on "Rename…" opens the rename dialog, Esc closes it (nothing
    # renamed) and the focus is back on the item.
    page.keyboard.press("ContextMenu")
    page.wait_for_selector("[data-testid=context-menu]", timeout=TIMEOUT)
    page.keyboard.press("End")
    page.wait_for_function("() => document.activeElement.textContent === 'Download'", timeout=TIMEOUT)
    page.keyboard.press("Home")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    page.wait_for_function("() => document.activeElement.textContent === 'Rename…'", timeout=TIMEOUT)
    page.keyboard.press("Enter")
    page.wait_for_selector("#dialog[open][role=dialog][aria-modal=true]", timeout=TIMEOUT)
    assert page.input_value("[data-testid=dialog-input]") == "renamed.py"
    page.keyboard.press("Escape")
    page.wait_for_selector("#dialog:not([open])", state="attached", timeout=TIMEOUT)
    wait_focus(page, "renamed.py")
    assert visible_paths(page) == ["pkg", "b.txt", "renamed.py"]

    # Delete asks first (Esc keeps the file), then deletes; the focus moves to a neighbour.
    arrow_to(page, "ArrowUp", "b.txt", start="renamed.py")
    page.keyboard.press("Delete")
    page.wait_for_selector("#dialog[open]", timeout=TIMEOUT)
    assert "b.txt" in page.inner_text("#dialog")
    page.keyboard.press("Escape")
    wait_focus(page, "b.txt")
    page.keyboard.press("Delete")
    page.wait_for_selector("#dialog[open] [data-choice=true]:focus", timeout=TIMEOUT)
    page.keyboard.press("Enter")
    page.wait_for_selector(item("b.txt"), state="detached", timeout=TIMEOUT)
    wait_focus(page, "renamed.py")
    assert visible_paths(page) == ["pkg", "renamed.py"]
    listing = page.request.get(
        f"{url}/api/vibecode/sessions/{page.url.rsplit('/', 1)[-1]}/files?path="
    ).json()
    assert sorted(e["name"] for e in listing["entries"] if e["name"] != ".home") == ["pkg", "renamed.py"]
    assert console.unexpected() == []


@pytest.mark.docker
def test_editor_tabs_work_with_the_keyboard(signed_in, daphne_server, console):
    page = signed_in
    url = daphne_server.url
    open_workspace(page, url, [("one.py", "file"), ("two.md", "file"), ("three.js", "file")])
    for name in ("one.py", "two.md", "three.js"):
        page.click(f"{item(name)} .row")
        page.wait_for_selector(f"{tab(name)}[aria-selected=true]", timeout=TIMEOUT)
    assert page.get_attribute("[data-testid=editor-tabs]", "role") == "tablist"
    assert page.locator("[data-testid=editor-tab][role=tab][aria-selected=true]").count() == 1
    # File icons by type, in the tree and on the tabs.
    assert page.get_attribute(f"{tab('one.py')} .file-icon", "data-kind") == "python"
    assert page.get_attribute(f"{item('two.md')} .file-icon", "data-kind") == "markdown"

    # Ctrl+Tab cycles forward (wrapping), Ctrl+Shift+Tab back, from inside the editor.
    page.click("[data-testid=editor] .view-lines")
    page.keyboard.press("Control+Tab")
    page.wait_for_selector(f"{tab('one.py')}[aria-selected=true]", timeout=TIMEOUT)
    page.keyboard.press("Control+Tab")
    page.wait_for_selector(f"{tab('two.md')}[aria-selected=true]", timeout=TIMEOUT)
    page.keyboard.press("Control+Shift+Tab")
    page.wait_for_selector(f"{tab('one.py')}[aria-selected=true]", timeout=TIMEOUT)
    # Typing goes to the file now shown: the editor kept the focus.
    page.keyboard.type("x = 1")
    page.wait_for_selector(f"{tab('one.py')}.dirty", timeout=TIMEOUT)
    page.keyboard.press("Control+s")
    page.wait_for_selector(f"{tab('one.py')}:not(.dirty)", timeout=TIMEOUT)

    # In the tab strip: the active tab is the one tab stop; arrows move and show.
    page.focus(f"{tab('one.py')}")
    assert page.get_attribute(tab("one.py"), "tabindex") == "0"
    page.keyboard.press("ArrowRight")
    wait_focus(page, "two.md")
    page.wait_for_selector(f"{tab('two.md')}[aria-selected=true]", timeout=TIMEOUT)
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    wait_focus(page, "three.js")
    page.keyboard.press("Home")
    wait_focus(page, "one.py")

    # Ctrl+W closes the active tab (and Alt+W, for when the browser keeps Ctrl+W).
    page.keyboard.press("Enter")
    page.wait_for_function("() => !!document.activeElement.closest('.monaco-editor')", timeout=TIMEOUT)
    page.keyboard.press("Control+w")
    page.wait_for_selector(tab("one.py"), state="detached", timeout=TIMEOUT)
    page.wait_for_selector("[data-testid=editor-tab][aria-selected=true]", timeout=TIMEOUT)
    page.keyboard.press("Alt+w")
    page.wait_for_function(
        "() => document.querySelectorAll('[data-testid=editor-tab]').length === 1", timeout=TIMEOUT
    )
    assert page.locator("[data-testid=editor-tab][aria-selected=true]").count() == 1
    # Ctrl+W in the terminal is the shell's, not the editor's.
    page.click("[data-testid=terminal] .xterm-screen")
    page.keyboard.press("Control+w")
    page.keyboard.type("echo KEEP-$((1+1))\n")
    wait_for_terminal_text(page, "KEEP-2", timeout=TIMEOUT)
    assert page.locator("[data-testid=editor-tab]").count() == 1
    assert console.unexpected() == []


@pytest.mark.docker
def test_dialogs_close_on_escape_and_give_the_focus_back(signed_in, daphne_server, console):
    page = signed_in
    url = daphne_server.url
    open_workspace(page, url, [("x.py", "file")])
    page.focus("[data-testid=new-file]")
    page.keyboard.press("Enter")
    page.wait_for_selector("#dialog[open][role=dialog][aria-modal=true]", timeout=TIMEOUT)
    # Named by its heading, and the input is labelled.
    title_id = page.get_attribute("#dialog", "aria-labelledby")
    assert page.inner_text(f"#{title_id}") == "New file"
    assert page.get_attribute("[data-testid=dialog-input]", "aria-labelledby")
    page.wait_for_function("() => document.activeElement.dataset.testid === 'dialog-input'", timeout=TIMEOUT)
    page.keyboard.type("never.py")
    page.keyboard.press("Escape")
    page.wait_for_selector("#dialog:not([open])", state="attached", timeout=TIMEOUT)
    page.wait_for_function("() => document.activeElement.dataset.testid === 'new-file'", timeout=TIMEOUT)
    assert page.locator(item("never.py")).count() == 0
    assert console.unexpected() == []


def test_the_theme_follows_the_os_and_a_choice_sticks(signed_in, daphne_server, console):
    page = signed_in
    url = daphne_server.url
    background = "() => getComputedStyle(document.body).backgroundColor"
    theme = "() => document.documentElement.dataset.theme"

    # The login page follows the OS (signed out in a second page of the same browser context).
    login = page.context.browser.new_page(color_scheme="light")
    login.goto(url + "/login")
    assert login.evaluate(theme) == "light"
    assert login.evaluate(background) == "rgb(255, 255, 255)"
    login.emulate_media(color_scheme="dark")
    login.wait_for_function("() => document.documentElement.dataset.theme === 'dark'", timeout=TIMEOUT)
    assert login.evaluate(background) == "rgb(30, 30, 30)"
    login.close()

    # The dashboard follows the OS, live, while no choice is stored.
    page.emulate_media(color_scheme="light")
    page.goto(url + "/")
    assert page.evaluate(theme) == "light"
    assert page.evaluate(background) == "rgb(255, 255, 255)"
    page.emulate_media(color_scheme="dark")
    page.wait_for_function("() => document.documentElement.dataset.theme === 'dark'", timeout=TIMEOUT)
    assert page.evaluate("() => window.vibecodeTheme.choice()") == "system"

    # The toggle: the other theme, chosen; it sticks across reloads and OS changes.
    page.click("[data-testid=theme-toggle]")
    page.wait_for_function("() => document.documentElement.dataset.theme === 'light'", timeout=TIMEOUT)
    assert page.evaluate("() => localStorage.getItem('vibecode.theme')") == "light"
    page.reload()
    assert page.evaluate(theme) == "light"
    page.emulate_media(color_scheme="light")
    page.emulate_media(color_scheme="dark")
    assert page.evaluate(theme) == "light"
    assert "light" in page.get_attribute("[data-testid=theme-toggle]", "aria-label")
    page.screenshot(path=str(ARTIFACTS / "dashboard-light.png"))
    # The choice holds on the other pages too (not-found here).
    page.goto(url + "/ide/nosuchsession")
    assert page.evaluate(theme) == "light"
    assert page.evaluate(background) == "rgb(255, 255, 255)"

    # Others set it through window.vibecodeTheme; "system" follows the OS again.
    page.goto(url + "/")
    page.evaluate("() => window.vibecodeTheme.set('dark')")
    assert page.evaluate(theme) == "dark"
    page.evaluate("() => window.vibecodeTheme.set('system')")
    assert page.evaluate("() => localStorage.getItem('vibecode.theme')") is None
    assert page.evaluate(theme) == "dark"  # the OS is dark
    page.emulate_media(color_scheme="light")
    page.wait_for_function("() => document.documentElement.dataset.theme === 'light'", timeout=TIMEOUT)
    assert console.unexpected("404 (Not Found)") == []  # the not-found page answers 404
