"""The IDE in a real Chromium against daphne and the real engine: a user's whole journey, with
no JavaScript console error at any point, and screenshots of what they saw."""

from __future__ import annotations

import io
import shutil
import zipfile

import pytest

from sessions_app.models import Session
from tests.conftest import ARTIFACTS, REPO_ROOT
from tests.e2e.conftest import (
    new_file,
    open_ide,
    terminal_text,
    type_in_editor,
    wait_for_ide,
    wait_for_terminal_text,
)

pytestmark = [pytest.mark.browser, pytest.mark.docker, pytest.mark.django_db(transaction=True)]

PROGRAM = 'import sys\nprint("hello from vibecode", sum(range(10)))\n'

# A drop of a folder from the desktop, as Chromium delivers it: entries of the File System API.
DROP_FOLDER = """
(tree) => {
  const fileEntry = (name, text) => ({ isFile: true, isDirectory: false, name,
    file: (ok) => ok(new File([text], name)) });
  const dirEntry = (name, children) => ({ isFile: false, isDirectory: true, name,
    createReader: () => { let done = false;
      return { readEntries: (ok) => { ok(done ? [] : children); done = true; } }; } });
  const build = (name, node) => typeof node === "string" ? fileEntry(name, node)
    : dirEntry(name, Object.entries(node).map(([k, v]) => build(k, v)));
  const [[top, content]] = Object.entries(tree);
  const transfer = { types: ["Files"], files: [], getData: () => "",
    items: [{ webkitGetAsEntry: () => build(top, content) }], dropEffect: "copy" };
  const target = document.querySelector("[data-testid=tree]");
  for (const type of ["dragover", "drop"]) {
    const event = new Event(type, { bubbles: true, cancelable: true });
    Object.defineProperty(event, "dataTransfer", { value: transfer });
    target.dispatchEvent(event);
  }
}
"""


def test_a_users_journey_through_the_ide(signed_in, daphne_server, console):
    page = signed_in
    url = daphne_server.url

    # 1. Create a workspace from the dashboard: progress, then the IDE opens by itself.
    page.fill("input[name=name]", "journey")
    page.click("[data-testid=create]")
    page.wait_for_url(f"{url}/ide/*", timeout=30000)
    session_id = page.url.rsplit("/", 1)[-1]
    page.wait_for_selector("[data-testid=terminal] .xterm-rows", timeout=30000)
    wait_for_terminal_text(page, "$")
    assert page.locator("[data-testid=status-connection]").inner_text() == "terminal: connected"
    wait_for_ide(page)

    # 2. Create main.py in the tree and type a program into Monaco.
    new_file(page, "main.py")
    page.wait_for_selector("[data-testid=editor-tab][data-path='main.py']")
    type_in_editor(page, PROGRAM)
    assert "dirty" in page.locator("[data-testid=editor-tab][data-path='main.py']").get_attribute("class")

    # 3. Save with Ctrl+S and run it.
    page.keyboard.press("Control+s")
    page.wait_for_selector("[data-testid=editor-tab][data-path='main.py']:not(.dirty)")
    page.click("[data-testid=run]")
    page.wait_for_selector("[data-testid=output-summary].ok", timeout=30000)
    assert page.locator("[data-testid=output]").inner_text().strip() == "hello from vibecode 45"
    assert "exit code 0" in page.locator("[data-testid=output-summary]").inner_text()
    page.screenshot(path=str(ARTIFACTS / "ide-output.png"))

    # 4. `ls` in the terminal shows main.py.
    page.click("[data-testid=panel-terminals]")
    page.click("[data-testid=terminal] .xterm-screen")
    # The marker is computed by the shell, so it appears only once the output has arrived, never
    # in the echo of the typed command line.
    page.keyboard.type("ls -1 --color=never; echo LS-$((40+2))-DONE\n")
    wait_for_terminal_text(page, "LS-42-DONE")
    assert "main.py" in terminal_text(page)
    page.screenshot(path=str(ARTIFACTS / "ide-terminal.png"))

    # 5. Reload: the terminal reattaches with its earlier output on screen.
    page.reload()
    page.wait_for_selector("[data-testid=terminal] .xterm-rows", timeout=30000)
    wait_for_terminal_text(page, "LS-42-DONE")
    assert "main.py" in terminal_text(page)
    wait_for_ide(page)

    # 6. Upload a folder by drag and drop; download the workspace zip and check its contents.
    page.evaluate(DROP_FOLDER, {"project": {"README.md": "# dropped\n", "src": {"app.py": "print(2)\n"}}})
    page.wait_for_selector("[data-testid=tree-row][title='project/src']", timeout=15000)
    with page.expect_download() as download_info:
        page.click("[data-testid=download-all]")
    archive = zipfile.ZipFile(io.BytesIO(open(download_info.value.path(), "rb").read()))
    assert archive.read("main.py").decode() == PROGRAM
    assert archive.read("project/README.md").decode() == "# dropped\n"
    assert archive.read("project/src/app.py").decode() == "print(2)\n"

    page.click("[data-testid=tree-row][title='main.py']")
    page.wait_for_selector("[data-testid=editor-tab][data-path='main.py'].active")
    page.screenshot(path=str(ARTIFACTS / "ide.png"))
    shutil.copyfile(ARTIFACTS / "ide.png", REPO_ROOT / "docs" / "images" / "ide.png")

    # 7. Suspend, resume, the file is still there, then delete.
    page.goto(url + "/")
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"))
    row = page.locator(f"#session-{session_id}")
    row.locator("button:has-text('Suspend')").click()
    page.wait_for_selector(f"#session-{session_id}.status-suspended")
    assert Session.objects.get(public_id=session_id).status == "suspended"
    # Resume goes straight to the IDE, which shows it resuming until it runs (with the dashboard's
    # script running: without it, the form resumes and comes back here).
    page.wait_for_load_state("domcontentloaded")
    page.locator(f"#session-{session_id} button:has-text('Resume')").click()
    page.wait_for_url(f"{url}/ide/{session_id}")
    page.wait_for_selector("[data-testid=tree-row][title='main.py']", timeout=30000)
    page.click("[data-testid=tree-row][title='main.py']")
    page.wait_for_selector("[data-testid=editor-tab][data-path='main.py']")
    assert 'print("hello from vibecode"' in page.locator(
        "[data-testid=editor] .view-lines"
    ).inner_text().replace("\u00a0", " ")
    page.goto(url + "/")
    page.locator(f"#session-{session_id} a:has-text('Delete')").click()
    page.check("input[name=force]")
    page.click("button[type=submit]:has-text('Delete')")
    page.wait_for_url(url + "/")
    assert page.locator(f"#session-{session_id}").count() == 0
    assert not Session.objects.filter(public_id=session_id).exists()

    assert console.errors == []


@pytest.mark.parametrize("viewport", [(1280, 800), (1920, 1080)])
def test_the_layout_fits_common_screens(signed_in, daphne_server, console, viewport):
    from tests.e2e.conftest import create_session_via_api

    page = signed_in
    page.set_viewport_size({"width": viewport[0], "height": viewport[1]})
    open_ide(page, daphne_server.url, create_session_via_api(page, daphne_server.url))
    for testid in ["tree", "editor-tabs", "terminal", "statusbar", "run"]:
        box = page.locator(f"[data-testid={testid}]").first.bounding_box()
        assert box and box["width"] > 0 and box["height"] > 0, testid
        assert box["x"] + box["width"] <= viewport[0] + 1 and box["y"] + box["height"] <= viewport[1] + 1, (
            testid
        )
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport[0]
    # Both themes render.
    page.click("[data-testid=theme-toggle]")
    assert page.evaluate("document.documentElement.dataset.theme") == "light"
    page.screenshot(path=str(ARTIFACTS / f"ide-light-{viewport[0]}.png"))
    assert console.errors == []
