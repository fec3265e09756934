"""The chat over the real wire (daphne, ASGI): pieces reach the client as the model writes them,
not all at the end, and a client going away mid-answer leaves the partial answer stored."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from rest_framework_simplejwt.tokens import RefreshToken

from assistant_app.models import Message
from tests.assistant.conftest import make_session
from tests.assistant.servers import ANSWER, ANSWER_PIECES

pytestmark = pytest.mark.django_db(transaction=True)


def auth(user) -> dict[str, str]:
    return {"Authorization": f"Bearer {RefreshToken.for_user(user).access_token}"}


def test_pieces_arrive_as_the_model_writes_them(ollama_daphne, alice):
    session = make_session(alice)
    url = f"{ollama_daphne.url}/api/vibecode/sessions/{session.public_id}/assistant/chat"
    arrivals: list[tuple[float, dict]] = []
    started = time.monotonic()
    with httpx.stream("POST", url, json={"message": "hi"}, headers=auth(alice), timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/x-ndjson"
        for line in response.iter_lines():
            arrivals.append((time.monotonic() - started, json.loads(line)))
    events = [event for _, event in arrivals]
    assert "".join(e["text"] for e in events if e["type"] == "delta") == ANSWER
    assert events[-1]["type"] == "done"
    # The local model sends its pieces 0.4 s apart: the first must arrive long before the last.
    first_delta, done = arrivals[0][0], arrivals[-1][0]
    assert done - first_delta > 1.2, arrivals
    assert Message.objects.get(role="assistant").content == ANSWER


def test_a_client_going_away_mid_answer_keeps_what_was_written(ollama_daphne, alice):
    session = make_session(alice)
    url = f"{ollama_daphne.url}/api/vibecode/sessions/{session.public_id}/assistant/chat"
    with httpx.stream("POST", url, json={"message": "hi"}, headers=auth(alice), timeout=30) as response:
        first = json.loads(next(response.iter_lines()))
        assert first == {"type": "delta", "text": ANSWER_PIECES[0]}
    # Closed after the first piece: daphne cancels the response; the answer so far is stored.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not Message.objects.filter(role="assistant").exists():
        time.sleep(0.1)
    answer = Message.objects.get(role="assistant")
    assert answer.incomplete and answer.error_code == "client_disconnected"
    assert answer.content.startswith(ANSWER_PIECES[0]) and answer.content != ANSWER
    assert Message.objects.get(role="user").content == "hi"
