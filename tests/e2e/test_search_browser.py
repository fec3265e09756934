"""Quick open and search & replace in Chromium, from the keyboard as a user would."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import create_session_via_api, csrf, open_ide

pytestmark = [pytest.mark.browser, pytest.mark.docker, pytest.mark.django_db(transaction=True)]

TIMEOUT = 30000


def put_file(page, base_url: str, session_id: str, path: str, content: str) -> None:
    response = page.request.put(
        f"{base_url}/api/vibecode/sessions/{session_id}/files/content",
        data={"path": path, "content": content},
        headers={"X-CSRFToken": csrf(page)},
    )
    assert response.status == 200, response.text()


def get_file(page, base_url: str, session_id: str, path: str) -> str:
    response = page.request.get(f"{base_url}/api/vibecode/sessions/{session_id}/files/content?path={path}")
    assert response.status == 200, response.text()
    return response.json()["content"]


def quick_open(page, text: str) -> None:
    page.keyboard.press("Control+p")
    field = page.locator("[data-testid=quick-open-input]")
    expect(field).to_be_visible(timeout=TIMEOUT)
    expect(field).to_be_focused(timeout=TIMEOUT)
    field.fill(text)


def test_ctrl_p_opens_a_file_by_a_fuzzy_name_and_jumps_to_a_line(signed_in, daphne_server, console):
    page = signed_in
    url = daphne_server.url
    session_id = create_session_via_api(page, url)
    put_file(
        page, url, session_id, "src/components/user_profile.py", "".join(f"line {n}\n" for n in range(1, 101))
    )
    put_file(page, url, session_id, "src/users.py", "x = 1\n")
    put_file(page, url, session_id, "README.md", "# one\ntwo\nthree\nfour\n")
    put_file(page, url, session_id, "node_modules/user_profile/index.js", "skip me\n")
    open_ide(page, url, session_id)

    quick_open(page, "usrprof")
    first = page.locator("[data-testid=quick-open-item]").first
    expect(first).to_have_attribute("data-path", "src/components/user_profile.py", timeout=TIMEOUT)
    expect(page.locator("[data-testid=quick-open-item][data-path^='node_modules']")).to_have_count(0)
    page.keyboard.press("Enter")
    expect(page.locator("[data-testid=quick-open]")).to_be_hidden(timeout=TIMEOUT)
    expect(
        page.locator("[data-testid=editor-tab][data-path='src/components/user_profile.py']")
    ).to_have_class("tab active", timeout=TIMEOUT)

    quick_open(page, ":42")
    page.keyboard.press("Enter")
    expect(page.locator("#status-cursor")).to_have_text("Ln 42, Col 1", timeout=TIMEOUT)

    # name:line opens another file at that line; the arrows choose among matches.
    quick_open(page, "readme:3")
    expect(page.locator("[data-testid=quick-open-item]").first).to_have_attribute(
        "data-path", "README.md", timeout=TIMEOUT
    )
    page.keyboard.press("Enter")
    expect(page.locator("[data-testid=editor-tab][data-path='README.md']")).to_have_class(
        "tab active", timeout=TIMEOUT
    )
    expect(page.locator("#status-cursor")).to_have_text("Ln 3, Col 1", timeout=TIMEOUT)

    quick_open(page, "user")
    items = page.locator("[data-testid=quick-open-item]")
    expect(items).to_have_count(2, timeout=TIMEOUT)
    expect(items.nth(0)).to_have_attribute("aria-selected", "true")
    page.keyboard.press("ArrowDown")
    expect(items.nth(1)).to_have_attribute("aria-selected", "true", timeout=TIMEOUT)
    expect(items.nth(0)).to_have_attribute("aria-selected", "false")
    page.keyboard.press("Escape")
    expect(page.locator("[data-testid=quick-open]")).to_be_hidden(timeout=TIMEOUT)
    assert console.unexpected() == []


def test_regex_search_and_replace_all_edit_three_files_and_report_a_conflict(
    signed_in, daphne_server, console
):
    page = signed_in
    url = daphne_server.url
    session_id = create_session_via_api(page, url)
    put_file(page, url, session_id, "a.py", "total_count = 1\n")
    put_file(page, url, session_id, "lib/b.py", "print(total_sum)\n")
    put_file(page, url, session_id, "c.txt", "the total_count\n")
    put_file(page, url, session_id, "d.md", "total_count\n")
    put_file(page, url, session_id, "e.md", "total_other\n")
    open_ide(page, url, session_id)
    quick_open(page, "a.py")
    expect(page.locator("[data-testid=quick-open-item]").first).to_have_attribute(
        "data-path", "a.py", timeout=TIMEOUT
    )
    page.keyboard.press("Enter")
    expect(page.locator("[data-testid=editor-tab][data-path='a.py']")).to_be_visible(timeout=TIMEOUT)

    page.keyboard.press("Control+Shift+F")
    search = page.locator("[data-testid=search-input]")
    expect(search).to_be_focused(timeout=TIMEOUT)
    page.click("[data-testid=search-regex]")
    search.fill(r"total_(count|sum)\b")
    search.press("Enter")
    summary = page.locator("[data-testid=search-summary]")
    expect(summary).to_have_text("4 results in 4 files", timeout=TIMEOUT)
    expect(page.locator("[data-testid=search-file]")).to_have_count(4)
    page.locator("[data-testid=search-file][data-path='lib/b.py'] [data-testid=search-hit]").click()
    expect(page.locator("[data-testid=editor-tab][data-path='lib/b.py']")).to_have_class(
        "tab active", timeout=TIMEOUT
    )

    page.fill("[data-testid=replace-input]", "grand_$1")
    page.click("[data-testid=replace-all]")
    preview = page.locator("[data-testid=replace-preview]")
    expect(preview).to_contain_text("grand_count", timeout=TIMEOUT)
    expect(preview).to_contain_text("grand_sum")
    assert get_file(page, url, session_id, "a.py") == "total_count = 1\n"  # nothing changed yet

    # Meanwhile d.md changes (say, from the terminal): it must not be overwritten.
    put_file(page, url, session_id, "d.md", "total_count, edited meanwhile\n")
    page.click("[data-testid=replace-apply]")
    expect(page.locator("[data-testid=replace-conflict]")).to_have_attribute(
        "data-path", "d.md", timeout=TIMEOUT
    )
    expect(summary).to_contain_text("Replaced 3 lines in 3 file(s)")
    assert get_file(page, url, session_id, "a.py") == "grand_count = 1\n"
    assert get_file(page, url, session_id, "lib/b.py") == "print(grand_sum)\n"
    assert get_file(page, url, session_id, "c.txt") == "the grand_count\n"
    assert get_file(page, url, session_id, "d.md") == "total_count, edited meanwhile\n"
    assert get_file(page, url, session_id, "e.md") == "total_other\n"
    # The open tab (no unsaved changes) shows the replaced text.
    expect(page.locator("[data-testid=editor] .view-lines")).to_contain_text(
        "print(grand_sum)", timeout=TIMEOUT
    )
    page.screenshot(path="test-artifacts/ide-search-replace.png")
    assert console.unexpected() == []
