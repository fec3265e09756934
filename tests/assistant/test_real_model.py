"""A real language model, offline: SmolLM2-135M-Instruct served by llama.cpp's OpenAI-compatible
server (from `.venv-llm`), asked through VibeCode's own chat endpoint on a live daphne."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from assistant_app.models import Message
from assistant_app.providers.openai import OpenAIProvider
from tests.assistant.conftest import OPENAI_KEY, make_session
from tests.assistant.test_streaming_wire import auth

pytestmark = pytest.mark.django_db(transaction=True)

PROGRAM = "def add(a, b):\n    return a + b\n\nprint(add(2, 3))\n"


def test_the_openai_client_streams_from_llama_cpp(llama_server):
    provider = OpenAIProvider(base_url=llama_server.url, api_key="", max_tokens=24)
    started = time.monotonic()
    pieces = list(
        provider.stream(
            [{"role": "user", "content": "Say hello in one short sentence."}], model="smollm2", timeout=60
        )
    )
    print(f"\n24-token answer from SmolLM2 in {time.monotonic() - started:.2f} s: {''.join(pieces)!r}")
    assert len(pieces) > 1 and "".join(pieces).strip()


def test_a_chat_streams_from_the_real_model_through_vibecode(llama_daphne, alice):
    session = make_session(alice)
    base = f"{llama_daphne.url}/api/vibecode/sessions/{session.public_id}/assistant"
    status = httpx.get(f"{llama_daphne.url}/api/vibecode/assistant/status", headers=auth(alice)).json()
    assert status == {"configured": True, "provider": "openai", "model": "smollm2", "hint": ""}

    body = {"action": "explain", "path": "main.py", "file_content": PROGRAM, "selection": PROGRAM}
    started = time.monotonic()
    first_delta_at = None
    events = []
    with httpx.stream("POST", f"{base}/chat", json=body, headers=auth(alice), timeout=120) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            event = json.loads(line)
            if event["type"] == "delta" and first_delta_at is None:
                first_delta_at = time.monotonic() - started
            events.append(event)
    total = time.monotonic() - started
    answer = "".join(e["text"] for e in events if e["type"] == "delta")
    print(
        f"\nSmolLM2 via VibeCode: first words after {first_delta_at:.2f} s, "
        f"{len(answer)} chars in {total:.2f} s"
    )

    assert events[-1]["type"] == "done", events[-1]
    assert sum(e["type"] == "delta" for e in events) > 3  # streamed in pieces, not one block
    assert answer.strip()
    assert first_delta_at is not None and first_delta_at < total
    stored = httpx.get(f"{base}/messages", headers=auth(alice)).json()["messages"]
    assert [m["role"] for m in stored] == ["user", "assistant"]
    assert stored[1]["content"] == answer and stored[1]["model"] == "smollm2"
    assert Message.objects.get(role="assistant").incomplete is False

    # The key VibeCode holds for the provider shows up neither in answers nor in the server's log.
    assert OPENAI_KEY not in json.dumps(stored) + json.dumps(status)
    assert OPENAI_KEY not in llama_daphne.log()
