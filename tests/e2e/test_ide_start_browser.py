"""An IDE page that is ready when the shell is, in Chromium on the real engine.

- New workspace goes straight to the IDE page (the API's ``{"wait": false}``), which shows the
  workspace starting and connects its terminal the moment it runs.
- A suspended (or failed) workspace shows why, with Resume, in the page.
- The terminal comes before Monaco, and Monaco's languages load only when a file needs them.
- Collected for production (DEBUG off), static files are hashed, ES module imports included,
  cached for good and gzipped, and the IDE works from them.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction

from sessions_app import engines, services
from sessions_app.models import Session
from tests.conftest import PASSWORD, REPO_ROOT, Daphne
from tests.e2e.conftest import create_session_via_api, csrf, new_file, open_ide, wait_for_terminal_text

pytestmark = [pytest.mark.browser, pytest.mark.docker, pytest.mark.django_db(transaction=True)]

PROMPT = "$"
# The first binary frame of any terminal WebSocket, in the page's clock (performance.now()).
FIRST_OUTPUT_PROBE = """
(() => {
  const Native = window.WebSocket;
  window.__firstOutputAt = null;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (event) => {
        if (typeof event.data !== "string" && window.__firstOutputAt === null) {
          window.__firstOutputAt = performance.now();
        }
      });
    }
  };
})();
"""


@pytest.fixture(autouse=True)
def background_done(sandboxes):
    """A create or resume started in this process's background ends before the cleanup."""
    yield
    services.session_background_wait()


def _startup_text(page) -> str:
    return page.locator("[data-testid=startup-text]").inner_text()


def test_new_workspace_opens_the_ide_at_once_and_its_terminal_when_it_runs(signed_in, daphne_server, console):
    page = signed_in
    page.fill("input[name=name]", "quick")
    with page.expect_response(lambda r: r.url.endswith("/api/vibecode/sessions")) as created:
        page.click("[data-testid=create]")
    # Answered once the session was claimed, before its sandbox runs.
    assert created.value.status == 202
    assert created.value.request.post_data_json == {"name": "quick", "wait": False}
    page.wait_for_url(f"{daphne_server.url}/ide/*")
    wait_for_terminal_text(page, PROMPT, timeout=30000)
    assert page.locator("[data-testid=startup]").is_hidden()
    assert page.locator("[data-testid=status-connection]").inner_text() == "terminal: connected"
    assert page.locator("[data-testid=terminal-tab]").count() == 1
    session_id = page.url.rsplit("/", 1)[-1]
    assert Session.objects.get(public_id=session_id).status == "running"
    # The rest of the IDE follows: Monaco and the explorer.
    page.wait_for_selector("[data-testid=editor] .monaco-editor", state="attached", timeout=30000)
    assert console.errors == []


def test_the_page_shows_the_workspace_starting_then_connects(signed_in, daphne_server, console):
    page = signed_in
    alice = get_user_model().objects.get(username="alice")
    # Claimed here, its sandbox not made yet: the page finds it creating, whatever the timing.
    candidates = engines.engine_candidates()
    with transaction.atomic():
        claimed = services._create_claim(user=alice, name="starting", candidates=candidates)
    session, member, seed_volume = claimed
    page.goto(f"{daphne_server.url}/ide/{session.public_id}")
    page.wait_for_selector("[data-testid=startup]:visible")
    assert _startup_text(page) == "Starting workspace…"
    # The terminal is drawn, and connects only once the workspace runs.
    assert page.locator("[data-testid=status-connection]").inner_text() == "terminal: connecting…"
    # Nothing waits on Monaco meanwhile, and nothing asks the sandbox.
    assert page.evaluate("typeof window.monaco") == "undefined"
    services._create_finish(session=session, member=member, seed_volume_name=seed_volume)
    wait_for_terminal_text(page, PROMPT, timeout=30000)
    assert page.locator("[data-testid=startup]").is_hidden()
    assert console.errors == []


def test_a_suspended_or_failed_workspace_is_resumed_from_the_page(signed_in, daphne_server, console):
    page = signed_in
    url = daphne_server.url
    session_id = create_session_via_api(page, url, "paused")
    headers = {"X-CSRFToken": csrf(page)}
    assert page.request.post(f"{url}/api/vibecode/sessions/{session_id}/suspend", headers=headers).ok

    page.goto(f"{url}/ide/{session_id}")
    page.wait_for_selector("[data-testid=startup]:visible")
    assert _startup_text(page) == "This workspace is suspended."
    assert page.locator("[data-testid=startup-error]").is_hidden()
    with page.expect_response(lambda r: r.url.endswith(f"/{session_id}/resume")) as resumed:
        page.click("[data-testid=startup-resume]")
    assert resumed.value.status == 202
    wait_for_terminal_text(page, PROMPT, timeout=30000)
    assert page.locator("[data-testid=startup]").is_hidden()

    # A failed start shows its reason, and Resume.
    assert page.request.post(f"{url}/api/vibecode/sessions/{session_id}/suspend", headers=headers).ok
    Session.objects.filter(public_id=session_id).update(status="error", last_error="The engine said no.")
    page.goto(f"{url}/ide/{session_id}")
    page.wait_for_selector("[data-testid=startup-error]:visible")
    assert _startup_text(page) == "This workspace could not start."
    assert page.locator("[data-testid=startup-error]").inner_text() == "The engine said no."
    page.click("[data-testid=startup-resume]")
    wait_for_terminal_text(page, PROMPT, timeout=30000)
    assert Session.objects.get(public_id=session_id).last_error == ""

    # Suspended under an open page: the page offers Resume, and comes back to the terminal.
    assert page.request.post(f"{url}/api/vibecode/sessions/{session_id}/suspend", headers=headers).ok
    page.wait_for_selector("[data-testid=startup-resume]:visible", timeout=15000)
    page.click("[data-testid=startup-resume]")
    page.wait_for_selector("[data-testid=startup]", state="hidden", timeout=30000)
    wait_for_terminal_text(page, PROMPT, timeout=30000)
    assert console.unexpected("409") == []


def test_the_dashboard_resume_goes_straight_to_the_ide(signed_in, daphne_server, console):
    page = signed_in
    url = daphne_server.url
    session_id = create_session_via_api(page, url, "later")
    page.request.post(
        f"{url}/api/vibecode/sessions/{session_id}/suspend", headers={"X-CSRFToken": csrf(page)}
    )
    page.goto(url + "/")
    page.locator(f"#session-{session_id} button:has-text('Resume')").click()
    page.wait_for_url(f"{url}/ide/{session_id}")
    wait_for_terminal_text(page, PROMPT, timeout=30000)
    assert console.errors == []


def test_the_terminal_comes_before_monaco_and_python_loads_when_a_py_file_opens(
    signed_in, daphne_server, console
):
    page = signed_in
    url = daphne_server.url
    session_id = create_session_via_api(page, url, "lazy")
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.add_init_script(FIRST_OUTPUT_PROBE)
    open_ide(page, url, session_id)
    page.wait_for_selector("[data-testid=editor] .monaco-editor", state="attached", timeout=30000)

    # Monaco's loader was asked for only after the terminal's first output.
    loader_at = page.evaluate(
        "() => performance.getEntriesByType('resource')"
        ".find((e) => e.name.endsWith('/vs/loader.js')).startTime"
    )
    first_output_at = page.evaluate("window.__firstOutputAt")
    assert first_output_at is not None and loader_at > first_output_at
    monaco = [u for u in requests if "/vendor/monaco-" in u]
    assert monaco, "Monaco is served from its versioned folder"
    assert not [u for u in requests if "/vendor/monaco/" in u]
    # No language of Monaco's yet: no file needs one.
    assert not [u for u in requests if re.search(r"python", u.split("?")[0].rsplit("/", 1)[-1])]

    new_file(page, "lazy.py")
    page.wait_for_selector("[data-testid=editor-tab][data-path='lazy.py']")
    page.wait_for_function(
        "() => window.monaco && monaco.languages.getLanguages().some((l) => l.id === 'python')"
        " && document.querySelector('[data-testid=editor] .view-lines') !== null"
    )
    python = [u for u in requests if re.search(r"python", u.split("?")[0].rsplit("/", 1)[-1])]
    assert python, "the python language chunk is fetched once a .py file opens"
    assert console.errors == []


# --- production shape: DEBUG off, files collected --------------------------------------------------


@pytest.fixture(scope="module")
def production_server(daphne_env, tmp_path_factory) -> Iterator[Daphne]:
    """A daphne as compose runs it: DEBUG off, static files collected (hashed and compressed)
    into a folder of its own, served by whitenoise."""
    root = tmp_path_factory.mktemp("static")
    env = {
        **daphne_env,
        "DEBUG": "false",
        "DJANGO_SECRET_KEY": "test-only-" + "k" * 40,
        "JWT_SECRET": "test-only-" + "j" * 40,
        "VIBECODE_STATIC_ROOT": str(root),
    }
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=REPO_ROOT, env=env, check=True
    )
    server = Daphne(env, log_path=tmp_path_factory.mktemp("daphne-prod") / "daphne.log")
    yield server
    server.stop()


def test_collected_static_files_are_immutable_gzipped_and_run_the_ide(
    transactional_db, production_server, page, console, sandboxes
):
    url = production_server.url
    get_user_model().objects.create_user("alice", "alice@example.com", PASSWORD)
    page.goto(url + "/login")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(url + "/")
    # The dashboard fetches the IDE's files ahead, by their hashed names.
    prefetched = page.eval_on_selector_all("link[rel=prefetch]", "(links) => links.map((l) => l.href)")
    assert any(re.search(r"/static/vibecode/ide/main\.[0-9a-f]{12}\.js$", u) for u in prefetched), prefetched
    assert any(re.search(r"/static/vendor/monaco-[^/]+/vs/loader\.js$", u) for u in prefetched), prefetched
    static: dict[str, dict[str, str]] = {}
    page.on("response", lambda r: static.__setitem__(r.url, r.headers) if "/static/" in r.url else None)
    session_id = create_session_via_api(page, url, "collected")
    open_ide(page, url, session_id)
    page.wait_for_selector("[data-testid=editor] .monaco-editor", state="attached", timeout=30000)

    ours = [u for u in static if "/static/vibecode/" in u]
    assert ours and all(re.search(r"\.[0-9a-f]{12}\.(js|css|svg)$", u) for u in ours), ours
    assert any("/static/vibecode/ide/terminals." in u for u in ours), "imports name the hashed files"
    assert any("/static/vibecode/ide/editor." in u for u in ours), "and so do the dynamic ones"
    for address, headers in static.items():
        assert headers.get("cache-control") == "max-age=315360000, public, immutable", address
    for address, headers in static.items():
        if address.endswith((".js", ".mjs", ".css")) and int(headers.get("content-length", "1000")) > 1000:
            assert headers.get("content-encoding") == "gzip", address
    assert console.errors == []
