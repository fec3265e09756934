"""The assistant renders an answer's markdown in a real Chromium, safely: headings, lists, tables
and links render; raw HTML, ``<img onerror>`` and ``javascript:`` links do nothing; code blocks are
highlighted by Monaco and keep their Insert/Replace/Apply buttons, which stay the same elements
while the answer streams on."""

from __future__ import annotations

import pytest

from tests.assistant.test_assistant_browser import editor_text, ide_with_file, last_answer
from tests.conftest import ARTIFACTS
from tests.e2e.conftest import Console

pytestmark = [pytest.mark.browser, pytest.mark.docker, pytest.mark.django_db(transaction=True)]

# Counts code-block buttons taken out of the page while the answer streams (a re-render that
# rebuilt the blocks would lose a click in progress).
WATCH_BUTTONS = """
() => {
  window.__removedButtons = 0;
  const host = document.querySelector("[data-testid=assistant-messages]");
  new MutationObserver((records) => {
    for (const record of records) {
      for (const node of record.removedNodes) {
        if (node.nodeType === 1 && (node.matches("[data-testid=assistant-apply]")
          || node.querySelector("[data-testid=assistant-apply]"))) window.__removedButtons += 1;
      }
    }
  }).observe(host, { childList: true, subtree: true });
}
"""


@pytest.fixture
def console(page) -> Console:
    seen = Console()
    page.on("console", lambda message: seen.errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: seen.errors.append(f"pageerror: {error}"))
    return seen


def ask(page, message: str) -> None:
    done = page.locator("[data-testid=assistant-message][data-role=assistant][data-state=done]").count()
    page.fill("[data-testid=assistant-input]", message)
    page.click("[data-testid=assistant-send]")
    page.wait_for_function(
        """(done) => document.querySelectorAll(
             "[data-testid=assistant-message][data-role=assistant][data-state=done]").length > done""",
        arg=done,
        timeout=30000,
    )


def check_markdown(page) -> None:
    answer = last_answer(page)
    assert answer.locator("h3").inner_text() == "Steps"
    assert answer.locator("ol > li").all_inner_texts() == ["Open the file", "Run it"]
    assert answer.locator("ol > li strong").inner_text() == "Open"
    assert answer.locator("ul > li").all_inner_texts() == ["one", "two"]
    assert answer.locator("table th").all_inner_texts() == ["Name", "Value"]
    assert answer.locator("table td").all_inner_texts() == ["a", "1", "b", "2"]

    docs = answer.get_by_role("link", name="the docs")
    assert docs.get_attribute("href") == "https://docs.python.org/3/"
    assert docs.get_attribute("target") == "_blank"
    assert "noopener" in docs.get_attribute("rel").split()
    # Hostile bits: no javascript: address, no image, no markup of the model's own.
    hrefs = answer.locator("a[href]").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert not [h for h in hrefs if "javascript" in h.lower()], hrefs
    assert answer.locator("img, script, iframe, [onerror], [onclick], [style]").count() == 0
    assert '<img src=x onerror="window.__pwned = 2">' in answer.inner_text()
    assert '<a href="javascript:window.__pwned=3">x</a>' in answer.inner_text()
    assert answer.get_by_role("link", name="pic").get_attribute("href") == "https://example.invalid/p.png"

    block = answer.locator("[data-testid=assistant-code]")
    answer.locator("[data-testid=assistant-code][data-highlighted=true]").wait_for(timeout=30000)
    assert block.locator("pre").inner_text().strip() == "print('md')"
    assert block.locator("pre span[class^=mtk]").count() >= 2, "the code block is not colorized"


def test_markdown_renders_and_hostile_markup_does_nothing(ollama_daphne, page, console, sandboxes):
    ide_with_file(page, ollama_daphne.url)
    page.click("[data-testid=assistant-toggle]")
    page.wait_for_selector("[data-testid=assistant-panel]:not([hidden])")
    page.evaluate(WATCH_BUTTONS)

    ask(page, "scenario=markdown")
    check_markdown(page)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ide-assistant-markdown.png"))
    assert page.evaluate("window.__removedButtons") == 0
    # Clicking the disarmed links changes nothing either.
    last_answer(page).locator("a", has_text="bad").click()
    assert page.evaluate("window.__pwned") is None
    assert len(page.context.pages) == 1

    # The code block's buttons still put its code into the editor.
    page.click("[data-testid=editor] .view-lines")
    page.keyboard.press("Control+A")
    last_answer(page).locator("[data-testid=assistant-replace]").click()
    page.wait_for_function(
        """() => window.monaco.editor.getModels()
             .some(m => m.uri.path === '/workspace/main.py' && m.getValue().includes("print('md')"))""",
        timeout=30000,
    )
    assert editor_text(page) == "print('md')"

    # A stored answer renders the same after a reload.
    page.reload()
    page.wait_for_selector("[data-testid=assistant-message][data-role=assistant]", timeout=30000)
    check_markdown(page)
    assert page.evaluate("window.__pwned") is None
    assert console.errors == []
