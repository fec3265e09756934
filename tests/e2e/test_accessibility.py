"""axe-core (from npm, injected by the test only: pages never ship it) finds no serious or
critical violation on the login, dashboard, delete, not-found and IDE pages, in the light and the
dark theme."""

from __future__ import annotations

import pytest

from tests.conftest import ARTIFACTS, REPO_ROOT
from tests.e2e.conftest import create_session_via_api, new_file, open_ide

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

AXE = REPO_ROOT / "node_modules" / "axe-core" / "axe.min.js"

# An init script, not a <script> tag: Playwright injects it whatever the page's
# Content-Security-Policy says, and it is there again after every navigation.
RUN_AXE = """async () => {
  const results = await window.axe.run(document, {
    resultTypes: ["violations"],
    runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"] },
  });
  return results.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.impact} ${v.id}: ${v.help}\\n  ` +
      v.nodes.slice(0, 5).map((n) => `${n.target.join(" ")} -- ${n.failureSummary}`).join("\\n  "));
}"""


def use_axe(page) -> None:
    page.add_init_script(path=str(AXE))


def set_scheme(page, scheme: str) -> None:
    """The OS's setting, as the page sees it; theme.js follows it (no choice is stored)."""
    page.emulate_media(color_scheme=scheme)
    page.wait_for_function("(scheme) => document.documentElement.dataset.theme === scheme", arg=scheme)
    # Colours fade from one theme to the other: axe must see where they end, not a mid-fade grey.
    page.wait_for_function("() => document.getAnimations().every((a) => !(a instanceof CSSTransition))")


def serious_violations(page, name: str) -> list[str]:
    page.wait_for_function("() => window.axe !== undefined")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"a11y-{name}.png"))
    return page.evaluate(RUN_AXE)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_login_page_has_no_serious_violations(daphne_server, page, console, scheme):
    use_axe(page)
    page.emulate_media(color_scheme=scheme)
    page.goto(daphne_server.url + "/login")
    set_scheme(page, scheme)
    assert serious_violations(page, f"login-{scheme}") == []
    # A failed sign-in shows its error, which must read as well.
    page.fill("input[name=username]", "nobody")
    page.fill("input[name=password]", "wrong")
    page.click("button[type=submit]")
    page.wait_for_selector(".error[role=alert]")
    assert serious_violations(page, f"login-error-{scheme}") == []


@pytest.mark.docker
def test_the_dashboard_and_the_ide_have_no_serious_violations(signed_in, daphne_server, console):
    page = signed_in
    use_axe(page)
    url = daphne_server.url
    session_id = create_session_via_api(page, url, "a11y")
    page.goto(url + "/")
    page.wait_for_selector(f"#session-{session_id} .badge-running")
    page.wait_for_selector(f"#session-{session_id} .meter-bar", timeout=30000)
    for scheme in ("light", "dark"):
        set_scheme(page, scheme)
        assert serious_violations(page, f"dashboard-{scheme}") == [], scheme
    # The delete confirmation and the not-found page, too.
    for path, name in ((f"/sessions/{session_id}/delete", "delete"), ("/ide/nosuchsession", "not-found")):
        page.goto(url + path)
        for scheme in ("light", "dark"):
            set_scheme(page, scheme)
            assert serious_violations(page, f"{name}-{scheme}") == [], (name, scheme)

    open_ide(page, url, session_id)
    new_file(page, "main.py")
    page.wait_for_selector("[data-testid=editor-tab][data-path='main.py'].active")
    page.click("[data-testid=new-folder]")
    page.fill("[data-testid=dialog-input]", "src")
    page.click("#dialog [data-choice=ok]")
    page.wait_for_selector("[data-testid=tree-item][data-path='src']")
    for scheme in ("light", "dark"):
        set_scheme(page, scheme)
        page.wait_for_function(
            "(dark) => document.querySelector('.monaco-editor').classList.contains('vs-dark') === dark",
            arg=scheme == "dark",
        )
        assert serious_violations(page, f"ide-{scheme}") == [], scheme
    assert console.unexpected("404 (Not Found)") == []  # the not-found page answers 404
