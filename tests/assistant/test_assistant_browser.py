"""The assistant panel in a real Chromium against daphne and the real engine: "Explain selection"
answered by a real model as it streams, code from an answer put into the editor (the diff view
changes nothing until accepted), model output shown as text only, and the one-sentence hint when
no provider is set up."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth import get_user_model

from tests.assistant.conftest import OPENAI_KEY
from tests.conftest import ARTIFACTS, PASSWORD, Daphne
from tests.e2e.conftest import Console, create_session_via_api, new_file, open_ide, type_in_editor

pytestmark = [pytest.mark.browser, pytest.mark.docker, pytest.mark.django_db(transaction=True)]

PROGRAM = "def add(a, b):\n    return a + b\n\nprint(add(2, 3))\n"
BROKEN = "print(1 / 0)\n"

# Records the length of the answer's text each time it changes, to see it grow piece by piece.
WATCH_ANSWER = """
() => {
  window.__answerLengths = [];
  const host = document.querySelector("[data-testid=assistant-messages]");
  new MutationObserver(() => {
    const answers = host.querySelectorAll("[data-testid=assistant-message][data-role=assistant]");
    const last = answers[answers.length - 1];
    if (last && last.dataset.state === "streaming") window.__answerLengths.push(last.innerText.length);
  }).observe(host, { childList: true, subtree: true, characterData: true, attributes: true });
}
"""


@pytest.fixture
def console(page) -> Console:
    seen = Console()
    page.on("console", lambda message: seen.errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: seen.errors.append(f"pageerror: {error}"))
    return seen


@pytest.fixture(scope="session")
def bare_daphne(daphne_env, tmp_path_factory) -> Iterator[Daphne]:
    """A daphne with no model provider configured at all."""
    env = {
        **daphne_env,
        "VIBECODE_ASSISTANT_PROVIDER": "auto",
        "OLLAMA_URL": "",
        "OPENAI_API_KEY": "",
        "OPENAI_BASE_URL": "",
        "ANTHROPIC_API_KEY": "",
    }
    server = Daphne(env, log_path=tmp_path_factory.mktemp("daphne-bare") / "daphne.log")
    yield server
    server.stop()


def ide_with_file(page, url: str, content: str = PROGRAM) -> None:
    """alice signed in, a new workspace open in the IDE, main.py holding ``content``."""
    get_user_model().objects.create_user("alice", "alice@example.com", PASSWORD)
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(url + "/login")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(url + "/")
    open_ide(page, url, create_session_via_api(page, url, "assistant"))
    new_file(page, "main.py")
    page.wait_for_selector("[data-testid=editor-tab][data-path='main.py']")
    type_in_editor(page, content)


def editor_text(page) -> str:
    return page.evaluate(
        "window.monaco.editor.getModels().find(m => m.uri.path === '/workspace/main.py').getValue()"
    )


def last_answer(page):
    return page.locator("[data-testid=assistant-message][data-role=assistant]").last


def test_explain_selection_streams_the_real_models_answer_into_the_panel(
    llama_daphne, page, console, sandboxes
):
    ide_with_file(page, llama_daphne.url)
    page.click("[data-testid=editor] .view-lines")
    page.keyboard.press("Control+A")

    page.click("[data-testid=assistant-toggle]")
    page.wait_for_selector("[data-testid=assistant-panel]:not([hidden])")
    assert page.locator("[data-testid=assistant-hint]").is_hidden()
    assert page.locator("[data-testid=assistant-model]").inner_text() == "openai · smollm2"
    page.evaluate(WATCH_ANSWER)
    page.click("[data-testid=assistant-explain]")

    question = page.locator("[data-testid=assistant-message][data-role=user]").last
    assert "Explain the selected code in main.py" in question.inner_text()
    assert "return a + b" in question.inner_text()
    page.wait_for_selector(
        "[data-testid=assistant-message][data-role=assistant][data-state=done]", timeout=60000
    )
    answer = last_answer(page).inner_text().strip()
    assert answer, "the model's answer is empty"
    lengths = page.evaluate("window.__answerLengths")
    grew = sorted({n for n in lengths if n > 0})
    assert len(grew) >= 2, f"the answer appeared in one block, not streamed: {lengths}"
    assert page.locator("[data-testid=assistant-error]").count() == 0
    page.screenshot(path=str(ARTIFACTS / "ide-assistant.png"))

    # The conversation is kept with the session: after a reload it is there again.
    page.reload()
    page.wait_for_selector("[data-testid=assistant-panel]:not([hidden])")  # the panel stays open
    page.wait_for_selector("[data-testid=assistant-message][data-role=assistant]")
    assert page.locator("[data-testid=assistant-message]").count() == 2
    assert last_answer(page).inner_text().strip()[:40] == answer[:40]

    assert OPENAI_KEY not in page.content()
    assert console.errors == []


def test_fix_last_error_then_code_goes_into_the_editor_only_when_the_user_says_so(
    ollama_daphne, ollama_server, page, console, sandboxes
):
    ide_with_file(page, ollama_daphne.url, BROKEN)
    page.keyboard.press("Control+s")
    page.wait_for_selector("[data-testid=editor-tab][data-path='main.py']:not(.dirty)")
    page.click("[data-testid=run]")
    page.wait_for_selector("[data-testid=output-summary].failed", timeout=30000)

    page.click("[data-testid=assistant-toggle]")
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    page.click("[data-testid=assistant-fix]")
    page.wait_for_selector(
        "[data-testid=assistant-message][data-role=assistant][data-state=done]", timeout=30000
    )
    question = page.locator("[data-testid=assistant-message][data-role=user]").last.inner_text()
    assert "Fix the error from the last run of main.py" in question
    prompt = ollama_server.requests[-1].body["messages"][-1]["content"]
    assert "ZeroDivisionError" in prompt and "print(1 / 0)" in prompt
    block = last_answer(page).locator("[data-testid=assistant-code]")
    assert block.locator("pre").inner_text().strip() == "print(42)"

    # Apply to file: a diff view; Cancel changes nothing, Accept replaces the file (unsaved).
    block.locator("[data-testid=assistant-apply]").click()
    page.wait_for_selector("[data-testid=assistant-diff] .monaco-diff-editor")
    assert editor_text(page) == BROKEN
    page.click("[data-testid=assistant-diff-cancel]")
    assert page.locator("[data-testid=assistant-diff]").count() == 0
    assert editor_text(page) == BROKEN
    block.locator("[data-testid=assistant-apply]").click()
    page.click("[data-testid=assistant-diff-accept]")
    assert editor_text(page) == "print(42)\n"
    assert "dirty" in page.locator("[data-testid=editor-tab][data-path='main.py']").get_attribute("class")
    page.keyboard.press("Control+z")  # one undoable edit, and the editor has the focus back
    assert editor_text(page) == BROKEN

    # Replace selection and insert at cursor.
    page.click("[data-testid=editor] .view-lines")
    page.keyboard.press("Control+A")
    block.locator("[data-testid=assistant-replace]").click()
    assert editor_text(page) == "print(42)"
    page.keyboard.press("Control+End")
    page.keyboard.press("Enter")
    block.locator("[data-testid=assistant-insert]").click()
    assert editor_text(page) == "print(42)\nprint(42)"

    # Model output is text, never markup.
    page.fill("[data-testid=assistant-input]", "scenario=html")
    page.click("[data-testid=assistant-send]")
    page.wait_for_selector("[data-testid=assistant-message][data-role=assistant][data-state=done] >> nth=1")
    assert '<img src="x" onerror="window.__pwned = 1">' in last_answer(page).inner_text()
    assert last_answer(page).locator("img, b, script").count() == 0
    assert page.evaluate("window.__pwned") is None

    # A provider failing mid-answer: the partial answer stays, with a clear message.
    page.fill("[data-testid=assistant-input]", "scenario=drop")
    page.click("[data-testid=assistant-send]")
    error = page.wait_for_selector("[data-testid=assistant-error]", timeout=30000)
    assert "dropped the connection before the answer was complete" in error.inner_text()
    assert last_answer(page).inner_text().startswith("Hello from")

    # Clear the conversation.
    page.click("[data-testid=assistant-clear]")
    page.click("#dialog [data-choice=true]")
    page.wait_for_selector("[data-testid=assistant-empty]")
    assert page.locator("[data-testid=assistant-message]").count() == 0
    page.reload()
    page.wait_for_selector("[data-testid=assistant-empty]")
    assert page.locator("[data-testid=assistant-message]").count() == 0
    assert console.errors == []


def test_with_no_provider_the_panel_says_what_to_set(bare_daphne, page, console, sandboxes):
    ide_with_file(page, bare_daphne.url)
    page.click("[data-testid=assistant-toggle]")
    hint = page.locator("[data-testid=assistant-hint]")
    hint.wait_for(state="visible")
    assert "OLLAMA_URL" in hint.inner_text() and "ANTHROPIC_API_KEY" in hint.inner_text()
    assert page.locator("[data-testid=assistant-explain]").is_disabled()
    assert page.locator("[data-testid=assistant-input]").is_disabled()
    page.screenshot(path=str(ARTIFACTS / "ide-assistant-not-configured.png"))
    assert console.errors == []
