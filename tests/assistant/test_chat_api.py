"""The assistant's API: the chat streams NDJSON and is stored per session; every failure gets a
clear message in the JSON error shape, and nothing leaks (no key, no one else's session)."""

from __future__ import annotations

import json
import logging

import pytest

from assistant_app.models import Message
from tests.accounts.test_auth_api import assert_error
from tests.assistant.conftest import ANTHROPIC_KEY, make_session
from tests.assistant.servers import ANSWER, ANSWER_PIECES
from tests.conftest import free_port

pytestmark = pytest.mark.django_db


def chat_url(session) -> str:
    return f"/api/vibecode/sessions/{session.public_id}/assistant/chat"


def messages_url(session) -> str:
    return f"/api/vibecode/sessions/{session.public_id}/assistant/messages"


def post_chat(client, session, **body):
    body.setdefault("action", "chat")
    if body["action"] == "chat":
        body.setdefault("message", "What does this do?")
    return client.post(chat_url(session), body, format="json")


def events_of(response) -> list[dict]:
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/x-ndjson"
    raw = b"".join(response.streaming_content).decode()
    assert raw.endswith("\n")
    return [json.loads(line) for line in raw.splitlines()]


# --- the happy path ----------------------------------------------------------------------------------


def test_a_chat_streams_deltas_then_done_and_is_stored(alice_api, alice_session, use_ollama):
    events = events_of(
        post_chat(
            alice_api,
            alice_session,
            message="What does this print?",
            path="main.py",
            file_content="print(6 * 7)\n",
            selection="6 * 7",
        )
    )
    assert [e["type"] for e in events] == ["delta"] * len(ANSWER_PIECES) + ["done"]
    assert "".join(e["text"] for e in events if e["type"] == "delta") == ANSWER

    [sent] = use_ollama.requests
    prompt = sent.body["messages"][-1]["content"]
    assert "print(6 * 7)" in prompt and "6 * 7" in prompt and prompt.endswith("What does this print?")

    stored = alice_api.get(messages_url(alice_session)).json()["messages"]
    assert [(m["role"], m["content"], m["incomplete"]) for m in stored] == [
        ("user", "What does this print?", False),
        ("assistant", ANSWER, False),
    ]
    assert stored[1]["model"] == "llama3.2"


def test_the_conversation_so_far_goes_with_the_next_question(alice_api, alice_session, use_ollama):
    events_of(post_chat(alice_api, alice_session, message="First question"))
    events_of(post_chat(alice_api, alice_session, message="Second question"))
    roles = [(m["role"], m["content"][:15]) for m in use_ollama.requests[-1].body["messages"]]
    assert roles[1:] == [("user", "First question"), ("assistant", ANSWER[:15]), ("user", "Second question")]


def test_explain_selection_asks_about_the_selected_code(alice_api, alice_session, use_ollama):
    events_of(
        post_chat(
            alice_api,
            alice_session,
            action="explain",
            path="main.py",
            file_content="a = 1\nb = 2\n",
            selection="b = 2",
        )
    )
    prompt = use_ollama.requests[-1].body["messages"][-1]["content"]
    assert "Explain this code from main.py" in prompt and "```python\nb = 2\n```" in prompt
    stored = Message.objects.filter(role="user").get()
    assert stored.action == "explain"


def test_fix_last_error_sends_the_run_output(alice_api, alice_session, use_ollama):
    events_of(
        post_chat(
            alice_api,
            alice_session,
            action="fix",
            path="main.py",
            file_content="print(1/0)\n",
            last_run={
                "path": "main.py",
                "stdout": "",
                "stderr": "ZeroDivisionError: division by zero",
                "exit_code": 1,
            },
        )
    )
    prompt = use_ollama.requests[-1].body["messages"][-1]["content"]
    assert "ZeroDivisionError: division by zero" in prompt and "exit code 1" in prompt


def test_fix_without_a_run_says_to_run_first(alice_api, alice_session, use_ollama):
    body = assert_error(post_chat(alice_api, alice_session, action="fix"), 400, "invalid")
    assert "Run the file first" in body["detail"]


def test_clearing_forgets_the_conversation(alice_api, alice_session, use_ollama):
    events_of(post_chat(alice_api, alice_session))
    assert len(alice_api.get(messages_url(alice_session)).json()["messages"]) == 2
    assert alice_api.delete(messages_url(alice_session)).status_code == 204
    assert alice_api.get(messages_url(alice_session)).json() == {"messages": []}
    events_of(post_chat(alice_api, alice_session, message="Fresh start"))
    assert [m["role"] for m in use_ollama.requests[-1].body["messages"]] == ["system", "user"]


def test_conversations_are_per_session(alice, alice_api, alice_session, use_ollama):
    other = make_session(alice, "other")
    events_of(post_chat(alice_api, alice_session))
    assert alice_api.get(messages_url(other)).json() == {"messages": []}


# --- status ------------------------------------------------------------------------------------------


def test_status_names_the_provider_and_model(alice_api, use_ollama):
    assert alice_api.get("/api/vibecode/assistant/status").json() == {
        "configured": True,
        "provider": "ollama",
        "model": "llama3.2",
        "hint": "",
    }


def test_auto_picks_the_first_configured_provider(alice_api, settings, use_anthropic):
    settings.VIBECODE_ASSISTANT_PROVIDER = "auto"
    settings.VIBECODE_ASSISTANT_MODEL = ""
    status = alice_api.get("/api/vibecode/assistant/status").json()
    assert status["provider"] == "anthropic" and status["model"] == "claude-haiku-4-5"
    settings.OPENAI_BASE_URL = "http://127.0.0.1:9/v1"
    assert alice_api.get("/api/vibecode/assistant/status").json()["provider"] == "openai"


# --- clear messages, nothing leaking -----------------------------------------------------------------


@pytest.fixture
def no_provider(settings):
    settings.VIBECODE_ASSISTANT_PROVIDER = "auto"
    settings.OLLAMA_URL = settings.OPENAI_API_KEY = settings.OPENAI_BASE_URL = settings.ANTHROPIC_API_KEY = ""


def test_with_no_provider_the_status_says_in_one_sentence_what_to_set(alice_api, no_provider):
    status = alice_api.get("/api/vibecode/assistant/status").json()
    assert status["configured"] is False and status["provider"] is None
    hint = status["hint"]
    assert hint.count(". ") == 0 and hint.endswith(".")
    for variable in ("OLLAMA_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY"):
        assert variable in hint


def test_with_no_provider_a_chat_answers_503_with_the_hint(alice_api, alice_session, no_provider):
    body = assert_error(post_chat(alice_api, alice_session), 503, "assistant_not_configured")
    assert "OLLAMA_URL" in body["detail"]
    assert not Message.objects.exists()


def test_a_provider_turned_off_says_so(alice_api, alice_session, settings):
    settings.VIBECODE_ASSISTANT_PROVIDER = "none"
    body = assert_error(post_chat(alice_api, alice_session), 503, "assistant_not_configured")
    assert "turned off" in body["detail"]


def test_an_unreachable_provider_answers_503_and_stores_nothing(
    alice_api, alice_session, use_ollama, settings
):
    settings.OLLAMA_URL = f"http://127.0.0.1:{free_port()}"
    body = assert_error(post_chat(alice_api, alice_session), 503, "provider_unreachable")
    assert body["detail"].startswith("Ollama cannot be reached")
    assert "127.0.0.1" not in body["detail"]
    assert not Message.objects.exists()


def test_a_provider_error_before_the_answer_is_a_502_with_its_reason(
    alice_api, alice_session, use_ollama, settings
):
    settings.VIBECODE_ASSISTANT_MODEL = "missing"
    body = assert_error(post_chat(alice_api, alice_session), 502, "provider_error")
    assert 'model "missing" not found' in body["detail"]


def test_a_silent_provider_times_out_with_504(alice_api, alice_session, use_ollama, settings):
    settings.VIBECODE_ASSISTANT_MODEL = "slow"
    settings.VIBECODE_ASSISTANT_TIMEOUT_SECONDS = 1.0
    assert_error(post_chat(alice_api, alice_session), 504, "provider_timeout")


@pytest.mark.parametrize("provider", ["use_ollama", "use_anthropic"])
def test_a_provider_dropping_mid_answer_keeps_the_partial_answer(
    request, provider, alice_api, alice_session, settings
):
    request.getfixturevalue(provider)
    settings.VIBECODE_ASSISTANT_MODEL = "drop"
    events = events_of(post_chat(alice_api, alice_session))
    assert [e["type"] for e in events] == ["delta", "delta", "error"]
    assert events[-1]["code"] == "provider_disconnected"
    assert "dropped the connection before the answer was complete" in events[-1]["message"]
    answer = Message.objects.get(role="assistant")
    assert answer.content == "".join(ANSWER_PIECES[:2])
    assert answer.incomplete and answer.error_code == "provider_disconnected"
    shown = alice_api.get(messages_url(alice_session)).json()["messages"][-1]
    assert shown["incomplete"] is True and shown["error_code"] == "provider_disconnected"


def test_an_error_event_mid_answer_is_passed_on_with_the_partial_answer(
    alice_api, alice_session, use_anthropic, settings
):
    settings.VIBECODE_ASSISTANT_MODEL = "error-mid"
    events = events_of(post_chat(alice_api, alice_session))
    assert events[0] == {"type": "delta", "text": ANSWER_PIECES[0]}
    assert events[-1]["type"] == "error" and events[-1]["code"] == "provider_error"
    assert "Overloaded" in events[-1]["message"]
    assert Message.objects.get(role="assistant").incomplete


def test_the_21st_question_in_a_minute_answers_429(alice_api, alice_session, use_ollama):
    for _ in range(20):
        events_of(post_chat(alice_api, alice_session))
    body = assert_error(post_chat(alice_api, alice_session), 429, "throttled")
    assert "throttled" in body["detail"].lower() or "request" in body["detail"].lower()
    response = post_chat(alice_api, alice_session)
    assert 1 <= int(response["Retry-After"]) <= 60
    # Reading the conversation is not a question: it still answers.
    assert alice_api.get(messages_url(alice_session)).status_code == 200


def test_an_oversized_question_answers_413_and_reaches_no_provider(
    alice_api, alice_session, use_ollama, settings
):
    settings.VIBECODE_ASSISTANT_MAX_CONTEXT_CHARS = 5000
    body = assert_error(
        post_chat(alice_api, alice_session, action="explain", path="big.py", selection="x = 1\n" * 2000),
        413,
        "context_too_large",
    )
    assert "5000" in body["detail"] and body["limit"] == 5000
    assert use_ollama.requests == []


def test_a_large_file_is_trimmed_not_refused(alice_api, alice_session, use_ollama, settings):
    settings.VIBECODE_ASSISTANT_MAX_CONTEXT_CHARS = 5000
    events_of(post_chat(alice_api, alice_session, path="big.py", file_content="x = 1\n" * 20000))
    assert sum(len(m["content"]) for m in use_ollama.requests[-1].body["messages"]) <= 5000


@pytest.mark.parametrize(
    ("method", "url"),
    [("post", chat_url), ("get", messages_url), ("delete", messages_url)],
)
def test_bob_asking_about_alices_session_gets_404(bob_api, alice_session, use_ollama, method, url):
    body = {"action": "chat", "message": "Tell me alice's secrets"} if method == "post" else None
    response = getattr(bob_api, method)(url(alice_session), body, format="json")
    assert_error(response, 404, "session_not_found")
    assert use_ollama.requests == []


def test_bob_cannot_clear_alices_conversation(alice_api, bob_api, alice_session, use_ollama):
    events_of(post_chat(alice_api, alice_session))
    bob_api.delete(messages_url(alice_session))
    assert Message.objects.count() == 2


def test_anonymous_requests_are_refused(api, alice_session):
    assert_error(api.get("/api/vibecode/assistant/status"), 401)
    assert_error(post_chat(api, alice_session), 401)


def test_the_api_key_appears_in_no_response_and_no_log(
    alice_api, alice_session, use_anthropic, settings, caplog
):
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []

    def text(response) -> str:
        body = b"".join(response.streaming_content) if response.streaming else response.content
        seen.append(body.decode() + str(dict(response.items())))
        return seen[-1]

    assert "Hello" in text(post_chat(alice_api, alice_session))
    assert use_anthropic.requests[-1].headers["x-api-key"] == ANTHROPIC_KEY  # the key was in use
    text(alice_api.get("/api/vibecode/assistant/status"))
    text(alice_api.get(messages_url(alice_session)))
    settings.VIBECODE_ASSISTANT_MODEL = "bad-key"  # this provider echoes the key in its 401
    assert "ANTHROPIC_API_KEY" in text(post_chat(alice_api, alice_session))
    settings.VIBECODE_ASSISTANT_MODEL = "drop"
    text(post_chat(alice_api, alice_session))
    settings.ANTHROPIC_BASE_URL = f"http://127.0.0.1:{free_port()}"
    text(post_chat(alice_api, alice_session))

    assert all(ANTHROPIC_KEY not in body for body in seen)
    assert ANTHROPIC_KEY not in caplog.text
    assert ANTHROPIC_KEY[-12:] not in caplog.text + "".join(seen)
    assert not Message.objects.filter(content__contains=ANTHROPIC_KEY[-12:]).exists()
