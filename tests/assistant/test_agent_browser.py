"""Agent mode in the assistant panel, in a real Chromium against daphne and the real engine, with
a scripted OpenAI-compatible server streaming tool calls (``agent_script.TURN``): the user states a
goal, accepts each diff card, runs each command, and the turn ends with the files in the workspace;
an open tab follows the accepted change; after a reload the turn's log is back, and Undo (with
"Restore anyway" for a file edited since) puts the workspace back. Reject leaves a file untouched.
A question is answered in the panel, and Stop kills a running command. Makes docs/images/agent.png."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from tests.assistant import agent_script
from tests.assistant.conftest import OPENAI_KEY
from tests.assistant.servers import OpenAIHandler, ProviderServer, Reply, RunningServer
from tests.conftest import ARTIFACTS, PASSWORD, REPO_ROOT, Daphne
from tests.e2e.conftest import Console, create_session_via_api, csrf, open_ide

pytestmark = [pytest.mark.browser, pytest.mark.docker, pytest.mark.django_db(transaction=True)]

GOAL = "Write add() with a test, and make the test pass."
WAIT = 60000  # ms: a step of a loaded machine's sandbox


@pytest.fixture
def console(page) -> Console:
    seen = Console()
    page.on("console", lambda message: seen.errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: seen.errors.append(f"pageerror: {error} {error.stack}"))
    return seen


@pytest.fixture(scope="module")
def scripted_server() -> Iterator[ProviderServer]:
    server = RunningServer(OpenAIHandler)
    yield server.info
    server.stop()


@pytest.fixture(scope="module")
def agent_daphne(daphne_env, scripted_server, tmp_path_factory) -> Iterator[Daphne]:
    """A daphne whose assistant is the scripted OpenAI-compatible server."""
    env = {
        **daphne_env,
        "VIBECODE_ASSISTANT_PROVIDER": "openai",
        "OPENAI_BASE_URL": scripted_server.url,
        "OPENAI_API_KEY": OPENAI_KEY,
        "VIBECODE_ASSISTANT_MODEL": "scripted",
        "VIBECODE_ASSISTANT_TIMEOUT_SECONDS": "10",
    }
    server = Daphne(env, log_path=tmp_path_factory.mktemp("daphne-agent") / "daphne.log")
    yield server
    server.stop()


@pytest.fixture
def script(scripted_server) -> Iterator[ProviderServer]:
    scripted_server.requests.clear()
    scripted_server.script = []
    yield scripted_server
    scripted_server.script = []


def ide(page, url: str) -> str:
    """alice signed in and a new workspace open in the IDE; its id."""
    get_user_model().objects.create_user("alice", "alice@example.com", PASSWORD)
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(url + "/login")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(url + "/")
    session_id = create_session_via_api(page, url, "agent")
    open_ide(page, url, session_id)
    return session_id


def files_url(url: str, session_id: str, path: str) -> str:
    return f"{url}/api/vibecode/sessions/{session_id}/files/content?path={path}"


def read(page, url: str, session_id: str, path: str) -> dict | None:
    """The file as the files API has it (None: it does not exist)."""
    response = page.request.get(files_url(url, session_id, path))
    if response.status == 404:
        return None
    assert response.ok, response.text()
    return response.json()


def write(page, url: str, session_id: str, path: str, content: str, etag: str | None = None) -> None:
    body = {"path": path, "content": content, **({"etag": etag} if etag else {})}
    response = page.request.put(
        f"{url}/api/vibecode/sessions/{session_id}/files/content",
        data=body,
        headers={"X-CSRFToken": csrf(page)},
    )
    assert response.ok, response.text()


def open_agent(page) -> None:
    page.click("[data-testid=assistant-toggle]")
    page.wait_for_selector("[data-testid=assistant-panel]:not([hidden])")
    page.click("[data-testid=assistant-mode-agent]")
    page.wait_for_selector("[data-testid=agent-panel]:not([hidden])[data-loaded=true]")


def start_turn(page, goal: str = GOAL) -> None:
    page.fill("[data-testid=agent-goal]", goal)
    page.keyboard.press("Enter")
    page.wait_for_selector("[data-testid=agent-turn]")


def step_at(page, index: int | str):
    return page.locator(f"[data-testid=agent-turn]:last-child [data-testid=agent-step][data-index='{index}']")


def pending_step(page, kind: str):
    """The step of the latest turn that waits for the user (of this kind), once it does; found by
    its index, so that the locator still finds it once decided."""
    step = page.locator("[data-testid=agent-turn]:last-child [data-testid=agent-step][data-status=pending]")
    step.wait_for(timeout=WAIT)
    assert step.count() == 1
    assert step.get_attribute("data-kind") == kind, step.inner_text()
    return step_at(page, step.get_attribute("data-index"))


def text(locator) -> str:
    """What a locator shows (Monaco draws spaces as no-break spaces)."""
    return locator.inner_text().replace("\xa0", " ")


def decide(page, step, button: str) -> None:
    """Click a step's button; wait until the step is decided (the server said so)."""
    index = step.get_attribute("data-index")
    step.locator(f"[data-testid={button}]").click()
    page.wait_for_selector(
        f"[data-testid=agent-turn]:last-child [data-testid=agent-step][data-index='{index}']"
        ":not([data-status=pending])",
        timeout=WAIT,
    )


def wait_turn(page, status: str) -> None:
    page.wait_for_selector(
        f"[data-testid=agent-turn]:last-child [data-testid=agent-turn-status][data-status={status}]",
        timeout=WAIT,
    )


def editor_text(page, path: str) -> str | None:
    return page.evaluate(
        "(path) => { const m = window.monaco.editor.getModels()"
        ".find(m => m.uri.path === '/workspace/' + path); return m ? m.getValue() : null; }",
        path,
    )


def test_a_goal_reviewed_card_by_card_ends_with_the_files_written_and_undo_puts_them_back(
    agent_daphne, script, page, console, sandboxes
):
    url = agent_daphne.url
    script.script = list(agent_script.TURN)
    page.emulate_media(color_scheme="dark")  # as the other screenshots in the docs
    session_id = ide(page, url)
    open_agent(page)
    page.wait_for_selector("[data-testid=agent-empty]")
    assert page.locator("[data-testid=agent-undo]").is_disabled()
    start_turn(page)

    # A new file: a diff card (Monaco's diff editor) with Accept / Reject; nothing written yet.
    card = pending_step(page, "write_file")
    assert "calc.py" in card.locator(".agent-step-head").inner_text()
    card.locator("[data-testid=agent-diff] .monaco-editor .view-lines").wait_for()
    assert "return a - b" in text(card.locator("[data-testid=agent-diff]"))
    assert card.locator("[data-testid=agent-accept]").is_visible()
    assert card.locator("[data-testid=agent-reject]").is_visible()
    assert read(page, url, session_id, "calc.py") is None
    page.wait_for_function(
        "() => document.querySelector('[data-testid=agent-announce]').textContent.includes('calc.py')"
    )
    decide(page, card, "agent-accept")
    # The explorer shows the new file; open it, to see the tab follow the agent's next change.
    page.locator("[data-testid=tree-item][data-path='calc.py'] > [data-testid=tree-row]").click(timeout=WAIT)
    page.wait_for_selector("[data-testid=editor-tab][data-path='calc.py']")

    card = pending_step(page, "write_file")
    assert "test_calc.py" in card.inner_text()
    card.locator("[data-testid=agent-diff] .monaco-editor .view-lines").wait_for()
    page.wait_for_function("() => document.querySelector('[data-testid=agent-diff] .view-lines')")
    ARTIFACTS.mkdir(exist_ok=True)
    page.mouse.move(0, 0)
    page.locator("[data-testid=assistant-panel]").screenshot(path=str(ARTIFACTS / "agent.png"))
    shutil.copyfile(ARTIFACTS / "agent.png", REPO_ROOT / "docs" / "images" / "agent.png")
    decide(page, card, "agent-accept")

    # A command: Run, then its output and exit code (the test fails: add subtracts).
    card = pending_step(page, "run")
    assert card.locator("[data-testid=agent-command]").inner_text() == "$ python3 test_calc.py"
    decide(page, card, "agent-run")
    card.locator("[data-testid=agent-exit]").wait_for(timeout=WAIT)
    assert card.get_attribute("data-status") == "ran"
    assert card.locator("[data-testid=agent-exit]").inner_text() == "exit 1"
    assert "add(2, 3) is -1" in card.locator("[data-testid=agent-output]").inner_text()

    # The fix: an edit of calc.py; once accepted, the open tab shows it.
    card = pending_step(page, "edit_file")
    assert "calc.py" in card.locator(".agent-step-head").inner_text()
    decide(page, card, "agent-accept")
    page.wait_for_function(
        "() => { const m = window.monaco.editor.getModels().find(m => m.uri.path === '/workspace/calc.py');"
        " return m && m.getValue().includes('a + b'); }",
        timeout=WAIT,
    )
    assert editor_text(page, "calc.py") == agent_script.CALC_FIXED

    card = pending_step(page, "run")
    decide(page, card, "agent-run")
    wait_turn(page, "done")
    assert page.locator("[data-testid=agent-summary]").inner_text().strip() == agent_script.SUMMARY
    last_run = page.locator(
        "[data-testid=agent-turn]:last-child [data-testid=agent-step][data-kind=run]"
    ).last
    assert last_run.locator("[data-testid=agent-exit]").inner_text() == "exit 0"
    assert "all tests pass" in last_run.locator("[data-testid=agent-output]").inner_text()
    # The reads are one line each.
    line = page.locator("[data-testid=agent-step][data-kind=read_file] [data-testid=agent-line]")
    assert line.inner_text().split("\n")[-1].strip() == "Read calc.py"

    assert read(page, url, session_id, "calc.py")["content"] == agent_script.CALC_FIXED
    assert read(page, url, session_id, "test_calc.py")["content"] == agent_script.TEST_CALC

    # A reload shows the turn's log again, the diffs of the latest turn included.
    page.reload()
    page.wait_for_selector("[data-testid=agent-panel]:not([hidden])[data-loaded=true]")
    wait_turn(page, "done")
    assert page.locator("[data-testid=agent-step][data-kind=write_file]").count() == 2
    assert page.locator("[data-testid=agent-step][data-kind=edit_file][data-status=applied]").count() == 1
    assert page.locator("[data-testid=agent-summary]").inner_text().strip() == agent_script.SUMMARY
    page.locator("[data-testid=agent-diff] .monaco-diff-editor").wait_for()  # the edit's
    assert page.locator("[data-testid=agent-diff]:has(.monaco-editor)").count() == 3

    # Undo, with test_calc.py edited since: that file is reported; "Restore anyway" restores it.
    edited = read(page, url, session_id, "test_calc.py")
    write(page, url, session_id, "test_calc.py", "# mine\n", edited["etag"])
    page.click("[data-testid=agent-undo]")
    conflicts = page.locator("[data-testid=agent-undo-conflicts]")
    conflicts.wait_for(timeout=WAIT)
    assert "test_calc.py" in conflicts.inner_text()
    assert read(page, url, session_id, "calc.py") is None  # calc.py had no conflict: restored
    assert read(page, url, session_id, "test_calc.py")["content"] == "# mine\n"
    page.click("[data-testid=agent-undo-force]")
    wait_turn(page, "undone")
    assert read(page, url, session_id, "test_calc.py") is None
    assert page.locator("[data-testid=agent-undo]").is_disabled()
    page.wait_for_selector("[data-testid=editor-tab][data-path='calc.py']", state="detached", timeout=WAIT)
    page.wait_for_selector("[data-testid=tree-item][data-path='calc.py']", state="detached", timeout=WAIT)

    assert OPENAI_KEY not in page.content()
    assert console.errors == []


def test_reject_leaves_the_file_untouched(agent_daphne, script, page, console, sandboxes):
    url = agent_daphne.url
    script.script = [
        Reply("", (("edit_file", {"path": "calc.py", "search": "return a - b", "replace": "return a * b"}),)),
        Reply("I left calc.py as it was."),
    ]
    session_id = ide(page, url)
    write(page, url, session_id, "calc.py", agent_script.CALC_BUGGY)

    # The Chat / Agent switch is a tab list: the arrow keys move between the modes.
    page.click("[data-testid=assistant-toggle]")
    page.wait_for_selector("[data-testid=assistant-panel]:not([hidden])")
    page.focus("[data-testid=assistant-mode-chat]")
    page.keyboard.press("ArrowRight")
    page.wait_for_selector("[data-testid=agent-panel]:not([hidden])[data-loaded=true]")
    assert page.locator("[data-testid=assistant-mode-agent]").get_attribute("aria-selected") == "true"
    assert page.evaluate("() => document.activeElement.dataset.testid") == "assistant-mode-agent"

    # Auto-apply is a switch saved with the conversation (on, then off again).
    for wanted in (True, False):
        with page.expect_response(
            lambda r: r.url.endswith("/agent/settings") and r.request.method == "PUT"
        ) as saved:
            page.click("[data-testid=agent-auto-apply]")
        assert saved.value.json()["auto_apply"] is wanted
        assert page.locator("[data-testid=agent-auto-apply]").is_checked() is wanted

    start_turn(page, "Make add multiply.")
    card = pending_step(page, "edit_file")
    card.locator("[data-testid=agent-diff] .monaco-diff-editor").wait_for()
    assert "return a * b" in text(card.locator("[data-testid=agent-diff]"))
    decide(page, card, "agent-reject")
    wait_turn(page, "done")
    assert card.locator("[data-testid=agent-step-status]").inner_text().lower() == "rejected"
    assert read(page, url, session_id, "calc.py")["content"] == agent_script.CALC_BUGGY
    assert page.locator("[data-testid=agent-summary]").inner_text().strip() == "I left calc.py as it was."
    assert page.locator("[data-testid=agent-undo]").is_disabled()  # the turn changed nothing
    assert console.errors == []


def test_a_question_is_answered_in_the_panel_and_stop_kills_the_running_command(
    agent_daphne, script, page, console, sandboxes
):
    script.script = [
        Reply("", (("ask_user", {"question": "How long should I **wait**?"}),)),
        Reply("", (("run", {"command": "sleep 120", "timeout": 100}),)),
        Reply("never asked"),
    ]
    ide(page, agent_daphne.url)
    open_agent(page)
    start_turn(page, "Wait a while.")

    card = pending_step(page, "ask_user")
    assert card.locator("strong").inner_text() == "wait"  # the question is markdown
    card.locator("[data-testid=agent-answer-input]").fill("two minutes")
    card.locator("[data-testid=agent-answer-input]").press("Enter")
    card.locator("[data-testid=agent-answer-given]").wait_for(timeout=WAIT)
    assert card.locator("[data-testid=agent-answer-given]").inner_text() == "two minutes"

    card = pending_step(page, "run")
    decide(page, card, "agent-run")
    page.wait_for_selector("[data-testid=agent-step][data-kind=run][data-status=running]", timeout=WAIT)
    assert page.locator("[data-testid=agent-start]").is_disabled()
    page.click("[data-testid=agent-stop]")
    wait_turn(page, "stopped")
    page.wait_for_selector("[data-testid=agent-stop]", state="hidden")
    expect(card).to_have_attribute("data-status", "ran", timeout=WAIT)
    assert page.locator("[data-testid=agent-turn-error]").count() == 0  # Stop is no error
    assert page.locator("[data-testid=agent-start]").is_enabled()
    assert len(script.requests) == 2  # the model was not asked again
    assert console.errors == []
