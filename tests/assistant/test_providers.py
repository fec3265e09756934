"""The Ollama, Anthropic and OpenAI clients against local servers speaking each service's streaming wire
format: the answer streams, the request is what the service documents, and every failure (an
error status, an error mid-stream, a connection dropped mid-body, nothing listening, silence)
becomes a clear provider error with the pieces that did arrive kept."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from assistant_app.errors import ProviderDisconnected, ProviderError, ProviderTimeout, ProviderUnreachable
from assistant_app.providers.anthropic import AnthropicProvider, split_system
from assistant_app.providers.base import server_sent_events
from assistant_app.providers.ollama import OllamaProvider
from assistant_app.providers.openai import OpenAIProvider
from tests.assistant.conftest import ANTHROPIC_KEY, OPENAI_KEY
from tests.assistant.servers import ANSWER, ANSWER_PIECES, OpenAIHandler, ProviderServer, RunningServer
from tests.conftest import free_port

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is 6 * 7?"},
]


def ollama(server) -> OllamaProvider:
    return OllamaProvider(base_url=server.url, max_tokens=64)


def anthropic(server, key: str = ANTHROPIC_KEY) -> AnthropicProvider:
    return AnthropicProvider(base_url=server.url, api_key=key, max_tokens=64)


def collect(stream) -> tuple[list[str], ProviderError | None]:
    received: list[str] = []
    try:
        for piece in stream:
            received.append(piece)
    except ProviderError as exc:
        return received, exc
    return received, None


@pytest.fixture(scope="module")
def openai_server() -> Iterator[ProviderServer]:
    server = RunningServer(OpenAIHandler)
    yield server.info
    server.stop()


def openai(server, key: str = OPENAI_KEY) -> OpenAIProvider:
    return OpenAIProvider(base_url=server.url, api_key=key, max_tokens=64)


@pytest.fixture(params=["ollama", "anthropic", "openai"])
def client(request, ollama_server, anthropic_server, openai_server):
    server = {"ollama": ollama_server, "anthropic": anthropic_server, "openai": openai_server}[request.param]
    make = {"ollama": ollama, "anthropic": anthropic, "openai": openai}[request.param]
    server.requests.clear()
    return make(server), server


def test_it_streams_the_answer_piece_by_piece(client):
    provider, _server = client
    received, error = collect(provider.stream(MESSAGES, model="llama3.2", timeout=5))
    assert error is None
    assert received == ANSWER_PIECES
    assert "".join(received) == ANSWER


def test_nothing_is_sent_until_the_answer_is_read(client):
    provider, server = client
    stream = provider.stream(MESSAGES, model="llama3.2", timeout=5)
    assert server.requests == []
    next(stream)
    assert len(server.requests) == 1
    stream.close()


def test_ollama_gets_the_documented_chat_request(ollama_server):
    ollama_server.requests.clear()
    list(ollama(ollama_server).stream(MESSAGES, model="llama3.2", timeout=5))
    [seen] = ollama_server.requests
    assert seen.path == "/api/chat"
    assert seen.body["model"] == "llama3.2"
    assert seen.body["stream"] is True
    assert seen.body["messages"] == MESSAGES
    assert seen.body["options"] == {"num_predict": 64}


def test_anthropic_gets_the_documented_messages_request(anthropic_server):
    anthropic_server.requests.clear()
    list(anthropic(anthropic_server).stream(MESSAGES, model="claude-test", timeout=5))
    [seen] = anthropic_server.requests
    assert seen.path == "/v1/messages"
    assert seen.headers["x-api-key"] == ANTHROPIC_KEY
    assert seen.headers["anthropic-version"] == "2023-06-01"
    assert seen.body["system"] == "You are terse."
    assert seen.body["messages"] == [{"role": "user", "content": "What is 6 * 7?"}]
    assert seen.body["stream"] is True and seen.body["max_tokens"] == 64


def test_anthropic_turns_start_with_the_user_and_alternate():
    system, turns = split_system(
        [
            {"role": "system", "content": "S"},
            {"role": "assistant", "content": "orphan answer"},
            {"role": "user", "content": "a"},
            {"role": "user", "content": "b"},
            {"role": "assistant", "content": "c"},
        ]
    )
    assert system == "S"
    assert turns == [{"role": "user", "content": "a\n\nb"}, {"role": "assistant", "content": "c"}]


def test_an_error_status_becomes_a_provider_error_with_the_services_reason(client):
    provider, _server = client
    received, error = collect(provider.stream(MESSAGES, model="missing", timeout=5))
    assert received == []
    assert type(error) is ProviderError
    assert error.code == "provider_error" and error.status_code == 502
    assert "404" in error.detail and "missing" in error.detail


def test_an_error_inside_the_stream_keeps_what_arrived(client):
    provider, _server = client
    received, error = collect(provider.stream(MESSAGES, model="error-mid", timeout=5))
    assert received == ANSWER_PIECES[:1]
    assert type(error) is ProviderError
    assert any(reason in error.detail for reason in ("out of memory", "Overloaded", "server had an error"))


def test_a_connection_dropped_mid_stream_is_reported_after_the_pieces_that_arrived(client):
    provider, _server = client
    received, error = collect(provider.stream(MESSAGES, model="drop", timeout=5))
    assert received == ANSWER_PIECES[:2]
    assert isinstance(error, ProviderDisconnected)
    assert error.code == "provider_disconnected"
    assert "dropped the connection" in error.detail


def test_a_provider_that_is_not_listening_is_unreachable():
    port = free_port()  # nothing listens there
    for provider in (
        OllamaProvider(base_url=f"http://127.0.0.1:{port}", max_tokens=8),
        AnthropicProvider(base_url=f"http://127.0.0.1:{port}", api_key=ANTHROPIC_KEY, max_tokens=8),
    ):
        received, error = collect(provider.stream(MESSAGES, model="x", timeout=5))
        assert received == []
        assert isinstance(error, ProviderUnreachable)
        assert error.code == "provider_unreachable" and error.status_code == 503
        assert "cannot be reached" in error.detail


def test_a_silent_provider_times_out(client):
    provider, _server = client
    received, error = collect(provider.stream(MESSAGES, model="slow", timeout=1))
    assert received == []
    assert isinstance(error, ProviderTimeout)
    assert error.code == "provider_timeout" and error.status_code == 504


@pytest.mark.parametrize(
    ("make", "key", "setting"),
    [(anthropic, ANTHROPIC_KEY, "ANTHROPIC_API_KEY"), (openai, OPENAI_KEY, "OPENAI_API_KEY")],
)
def test_a_key_echoed_back_by_the_provider_is_removed_from_the_error(
    make, key, setting, anthropic_server, openai_server, caplog
):
    caplog.set_level("DEBUG")
    server = anthropic_server if make is anthropic else openai_server
    _, error = collect(make(server).stream(MESSAGES, model="bad-key", timeout=5))
    assert isinstance(error, ProviderError)
    assert "401" in error.detail and setting in error.detail
    assert key not in error.detail
    assert "[redacted]" in error.detail
    assert key not in caplog.text


def test_openai_gets_the_documented_request_with_the_key_as_bearer(openai_server):
    openai_server.requests.clear()
    list(openai(openai_server).stream(MESSAGES, model="gpt-test", timeout=5))
    [seen] = openai_server.requests
    assert seen.path == "/chat/completions"
    assert seen.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert seen.body == {"model": "gpt-test", "messages": MESSAGES, "stream": True, "max_tokens": 64}


def test_a_local_openai_compatible_server_gets_no_authorization_without_a_key(openai_server):
    openai_server.requests.clear()
    assert "".join(openai(openai_server, key="").stream(MESSAGES, model="local", timeout=5)) == ANSWER
    assert "authorization" not in openai_server.requests[-1].headers


def test_server_sent_events_are_parsed_as_the_standard_says():
    lines = iter(
        [
            ": keep-alive",
            "event: one",
            "data: a",
            "data:b",
            "",
            "data: {}",
            "",
            "",
            "event: cut",
            "data: tail",
        ]
    )
    events = [(e.event, e.data) for e in server_sent_events(lines)]
    assert events == [("one", "a\nb"), ("message", "{}"), ("cut", "tail")]
