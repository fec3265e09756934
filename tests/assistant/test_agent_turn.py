"""Agent mode end to end on a real sandbox, with a scripted OpenAI-compatible server streaming
tool calls: a whole turn (create two files, run the tests, which fail, read, fix, run again,
which pass) reviewed step by step through the API, then undone; Reject leaves files untouched, a
conflicting edit is reported and not applied, and Stop kills a running command within a second."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import pytest

from assistant_app.models import AgentAuditEvent, AgentStep, AgentTurn
from sessions_app.models import Session
from tests.accounts.test_auth_api import assert_error
from tests.assistant import agent_script
from tests.assistant.conftest import OPENAI_KEY
from tests.assistant.servers import OpenAIHandler, ProviderServer, Reply, RunningServer
from workspace_app import runs, services

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.docker]

WAIT = 60.0


@pytest.fixture(scope="module")
def openai_server() -> Iterator[ProviderServer]:
    server = RunningServer(OpenAIHandler)
    yield server.info
    server.stop()


@pytest.fixture
def scripted(settings, openai_server) -> ProviderServer:
    settings.VIBECODE_ASSISTANT_PROVIDER = "openai"
    settings.OPENAI_BASE_URL = openai_server.url
    settings.OPENAI_API_KEY = OPENAI_KEY
    settings.VIBECODE_ASSISTANT_MODEL = "scripted"
    settings.VIBECODE_ASSISTANT_TIMEOUT_SECONDS = 10.0
    openai_server.requests.clear()
    openai_server.script = []
    yield openai_server
    openai_server.script = []


@pytest.fixture
def session(alice_api, sandboxes) -> Session:
    response = alice_api.post("/api/vibecode/sessions/create", {"name": "agent"}, format="json")
    assert response.status_code == 201, response.content
    return Session.objects.get(public_id=response.json()["session_id"])


def agent_url(session: Session) -> str:
    return f"/api/vibecode/sessions/{session.public_id}/assistant/agent"


def start(api, session: Session, goal: str = "Write add() with a test, and make the test pass.") -> dict:
    response = api.post(f"{agent_url(session)}/turns", {"goal": goal}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def wait_turn(api, session: Session, turn_id: int, until: Callable[[dict], bool], what: str) -> dict:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        turn = api.get(f"{agent_url(session)}/turns/{turn_id}").json()
        if until(turn):
            return turn
        assert turn["status"] in ("running", "waiting"), (what, turn)
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}: {turn}")


def pending(api, session: Session, turn_id: int) -> dict:
    turn = wait_turn(api, session, turn_id, lambda t: t["pending_step"] is not None, "a pending step")
    return turn["steps"][turn["pending_step"]]


def decide(api, session: Session, turn_id: int, index: int, decision: str, **extra) -> dict:
    url = f"{agent_url(session)}/turns/{turn_id}/steps/{index}/decision"
    response = api.post(url, {"decision": decision, **extra}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def ended(api, session: Session, turn_id: int) -> dict:
    return wait_turn(api, session, turn_id, lambda t: t["status"] not in ("running", "waiting"), "the end")


def content(session: Session, path: str) -> str | None:
    try:
        return services.workspace_read(session=session, path=path)["content"]
    except Exception as exc:
        if getattr(exc, "code", "") == "not_found":
            return None
        raise


def test_a_reviewed_turn_creates_runs_fixes_and_is_undone(alice_api, alice, session, scripted):
    scripted.script = list(agent_script.TURN)
    services.workspace_write(session=session, path="notes.txt", content=b"keep me\n")
    turn = start(alice_api, session)
    turn_id = turn["id"]

    # Each change waits for review, with its diff; nothing is written before the user accepts.
    first = pending(alice_api, session, turn_id)
    assert (first["kind"], first["path"], first["status"]) == ("write_file", "calc.py", "pending")
    assert "+++ b/calc.py" in first["diff"] and "+    return a - b" in first["diff"]
    assert content(session, "calc.py") is None
    decide(alice_api, session, turn_id, first["index"], "accept")
    second = pending(alice_api, session, turn_id)
    assert second["path"] == "test_calc.py"
    decide(alice_api, session, turn_id, second["index"], "accept")

    # The command shows before it runs; Run runs it, and its failure goes back to the model.
    run = pending(alice_api, session, turn_id)
    assert run["kind"] == "run" and run["command"] == ["python3", "test_calc.py"]
    decide(alice_api, session, turn_id, run["index"], "run")

    fix = pending(alice_api, session, turn_id)
    assert fix["kind"] == "edit_file" and "-    return a - b\n+    return a + b" in fix["diff"]
    decide(alice_api, session, turn_id, fix["index"], "accept")
    again = pending(alice_api, session, turn_id)
    assert again["kind"] == "run"
    decide(alice_api, session, turn_id, again["index"], "run")

    turn = ended(alice_api, session, turn_id)
    assert turn["status"] == "done", turn
    assert turn["summary"] == agent_script.SUMMARY and turn["error_code"] == ""
    assert turn["steps_used"] == len(agent_script.TURN) and turn["tokens_used"] == 150 * len(
        agent_script.TURN
    )
    kinds = [(s["kind"], s["status"]) for s in turn["steps"]]
    assert kinds == [
        ("message", "done"),
        ("write_file", "applied"),
        ("write_file", "applied"),
        ("run", "ran"),
        ("message", "done"),
        ("read_file", "done"),
        ("edit_file", "applied"),
        ("run", "ran"),
        ("message", "done"),
    ]
    failed_run, passed_run = turn["steps"][3], turn["steps"][7]
    assert failed_run["exit_code"] == 1 and "AssertionError: add(2, 3) is -1" in failed_run["result"]
    assert passed_run["exit_code"] == 0 and "all tests pass" in passed_run["result"]
    assert content(session, "calc.py") == agent_script.CALC_FIXED
    assert content(session, "test_calc.py") == agent_script.TEST_CALC

    # The model read the failure: the run's output went back as the tool result of its call.
    after_run = scripted.requests[2].body["messages"]
    assert after_run[-1]["role"] == "tool" and "AssertionError" in after_run[-1]["content"]
    assert after_run[-1]["tool_call_id"] == "call_0"
    # The model never sees the key.
    assert not any(OPENAI_KEY in json.dumps(r.body) for r in scripted.requests)

    # Everything it did is in the audit, attributed to alice.
    audit = list(AgentAuditEvent.objects.filter(turn_id=turn_id).order_by("created_at", "id"))
    assert [e.action for e in audit] == ["turn", "write", "write", "run", "write", "run"]
    assert {e.actor_id for e in audit} == {alice.pk}

    # The step log is kept: a reload reads it, and the event stream replays it to the end.
    listed = alice_api.get(f"{agent_url(session)}/turns").json()["turns"]
    assert [t["id"] for t in listed] == [turn_id] and len(listed[0]["steps"]) == 9
    response = alice_api.get(f"{agent_url(session)}/turns/{turn_id}/events")
    assert response["Content-Type"].startswith("text/event-stream")
    raw = b"".join(response.streaming_content).decode()
    names = [line[7:] for line in raw.splitlines() if line.startswith("event: ")]
    assert names.count("step") == 9 and names[-1] == "end"

    # Undo: the files the turn created are gone, the one it did not touch is as it was.
    undone = alice_api.post(f"{agent_url(session)}/turns/{turn_id}/undo", {}, format="json")
    assert undone.status_code == 200, undone.content
    assert sorted(undone.json()["restored"]) == ["calc.py", "test_calc.py"]
    assert undone.json()["conflicts"] == [] and undone.json()["turn"]["status"] == "undone"
    assert content(session, "calc.py") is None and content(session, "test_calc.py") is None
    assert content(session, "notes.txt") == "keep me\n"


def test_undo_restores_an_edited_file_and_reports_one_changed_since(alice_api, session, scripted):
    services.workspace_write(session=session, path="a.txt", content=b"one\n")
    services.workspace_write(session=session, path="b.txt", content=b"two\n")
    scripted.script = [
        Reply("", (("edit_file", {"path": "a.txt", "search": "one", "replace": "ONE"}),)),
        Reply("", (("write_file", {"path": "b.txt", "content": "TWO\n"}),)),
        Reply("Done."),
    ]
    alice_api.put(f"{agent_url(session)}/settings", {"auto_apply": True}, format="json")
    turn_id = start(alice_api, session)["id"]
    assert ended(alice_api, session, turn_id)["status"] == "done"
    assert (content(session, "a.txt"), content(session, "b.txt")) == ("ONE\n", "TWO\n")

    services.workspace_write(session=session, path="b.txt", content=b"mine\n")  # the user edits b.txt
    undone = alice_api.post(f"{agent_url(session)}/turns/{turn_id}/undo", {}, format="json").json()
    assert undone["restored"] == ["a.txt"] and undone["conflicts"] == ["b.txt"]
    assert (content(session, "a.txt"), content(session, "b.txt")) == ("one\n", "mine\n")
    forced = alice_api.post(
        f"{agent_url(session)}/turns/{turn_id}/undo", {"force": True}, format="json"
    ).json()
    assert forced["turn"]["status"] == "undone" and content(session, "b.txt") == "two\n"


def test_reject_leaves_the_file_untouched_and_a_conflicting_edit_is_not_applied(alice_api, session, scripted):
    services.workspace_write(session=session, path="app.py", content=b"print('v1')\n")
    scripted.script = [
        Reply("", (("write_file", {"path": "app.py", "content": "print('rewritten')\n"}),)),
        Reply("", (("edit_file", {"path": "app.py", "search": "v1", "replace": "v2"}),)),
        Reply("I could not change app.py."),
    ]
    turn_id = start(alice_api, session)["id"]
    write = pending(alice_api, session, turn_id)
    decide(alice_api, session, turn_id, write["index"], "reject")

    edit = pending(alice_api, session, turn_id)
    assert edit["kind"] == "edit_file"
    # The user changes the file while the diff waits: accepting it must not overwrite that.
    services.workspace_write(session=session, path="app.py", content=b"print('users edit')\n")
    decide(alice_api, session, turn_id, edit["index"], "accept")
    turn = ended(alice_api, session, turn_id)
    statuses = [(s["kind"], s["status"]) for s in turn["steps"]]
    assert statuses == [("write_file", "rejected"), ("edit_file", "conflict"), ("message", "done")]
    assert "rejected" in turn["steps"][0]["result"] and "changed since" in turn["steps"][1]["result"]
    assert content(session, "app.py") == "print('users edit')\n"
    # The model was told both.
    told = [m["content"] for m in scripted.requests[-1].body["messages"] if m["role"] == "tool"]
    assert "rejected" in told[0] and "changed since" in told[1]
    # A decided step can't be decided again.
    again = alice_api.post(
        f"{agent_url(session)}/turns/{turn_id}/steps/{edit['index']}/decision",
        {"decision": "accept"},
        format="json",
    )
    assert_error(again, 409, "step_not_pending")


def test_stop_during_a_run_kills_it_within_a_second(alice_api, session, scripted):
    scripted.script = [Reply("", (("run", {"command": "sleep 120", "timeout": 100}),)), Reply("never asked")]
    response = alice_api.put(f"{agent_url(session)}/settings", {"auto_run": True}, format="json")
    assert response.json() == {"auto_apply": False, "auto_run": True, "auto_allowed": True}
    turn_id = start(alice_api, session)["id"]
    turn = wait_turn(
        alice_api,
        session,
        turn_id,
        lambda t: any(s["run_id"] and s["status"] == "running" for s in t["steps"]),
        "the run",
    )
    run_id = next(s["run_id"] for s in turn["steps"] if s["run_id"])
    assert any(r["run_id"] == run_id and r["running"] for r in runs.run_list(session=session))

    asked = time.monotonic()
    stopped = alice_api.post(f"{agent_url(session)}/turns/{turn_id}/stop")
    assert stopped.status_code == 200, stopped.content
    assert not any(r["run_id"] == run_id and r["running"] for r in runs.run_list(session=session))
    assert time.monotonic() - asked < 1.0
    turn = ended(alice_api, session, turn_id)
    assert turn["status"] == "stopped"
    assert turn["steps"][-1]["status"] == "ran" and "stopped by the user" in turn["steps"][-1]["result"]
    assert len(scripted.requests) == 1  # the model was not asked again


def test_one_turn_at_a_time_and_someone_elses_session_is_404(alice_api, bob_api, session, scripted):
    scripted.script = [Reply("", (("ask_user", {"question": "Which file?"}),)), Reply("Thanks.")]
    turn_id = start(alice_api, session)["id"]
    question = pending(alice_api, session, turn_id)
    assert question["arguments"] == {"question": "Which file?"}
    busy = alice_api.post(f"{agent_url(session)}/turns", {"goal": "another"}, format="json")
    assert_error(busy, 409, "turn_busy")
    assert_error(bob_api.get(f"{agent_url(session)}/turns/{turn_id}"), 404)
    assert_error(bob_api.post(f"{agent_url(session)}/turns/{turn_id}/stop"), 404)
    decide(alice_api, session, turn_id, question["index"], "answer", answer="main.py")
    turn = ended(alice_api, session, turn_id)
    assert turn["status"] == "done" and turn["steps"][0]["answer"] == "main.py"
    assert "main.py" in scripted.requests[-1].body["messages"][-1]["content"]


def test_staff_can_forbid_auto_apply_and_auto_run(alice_api, session, scripted, settings):
    settings.VIBECODE_AGENT_ALLOW_AUTO = False
    response = alice_api.put(f"{agent_url(session)}/settings", {"auto_run": True}, format="json")
    assert_error(response, 403, "auto_forbidden")
    assert alice_api.get(f"{agent_url(session)}/settings").json()["auto_allowed"] is False


def test_a_model_without_tools_gets_a_clear_message(alice_api, session, scripted, settings):
    settings.VIBECODE_ASSISTANT_MODEL = "no-tools"
    turn_id = start(alice_api, session)["id"]
    turn = ended(alice_api, session, turn_id)
    assert turn["status"] == "failed" and turn["error_code"] == "agent_needs_tools"
    assert "Agent mode needs a model that can call tools" in turn["error_detail"]
    assert AgentTurn.objects.get(pk=turn_id).steps.count() == 0
    assert not AgentStep.objects.filter(turn_id=turn_id).exists()
