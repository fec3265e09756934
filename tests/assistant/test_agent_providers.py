"""Agent mode's tool calling in each provider's wire format, against local servers that stream
tool calls as the services do (OpenAI ``delta.tool_calls`` fragments, Anthropic ``tool_use``
blocks with ``input_json_delta``, Ollama ``message.tool_calls``): the same scripted turn comes
back as the same internal tool calls, and the results go back in each service's shape."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from assistant_app.agent.tools import TOOLS
from assistant_app.errors import AgentNeedsTools
from assistant_app.providers.anthropic import AnthropicProvider
from assistant_app.providers.base import AgentMessage
from assistant_app.providers.ollama import OllamaProvider
from assistant_app.providers.openai import OpenAIProvider
from tests.assistant import agent_script
from tests.assistant.conftest import ANTHROPIC_KEY, OPENAI_KEY
from tests.assistant.servers import OpenAIHandler, ProviderServer, RunningServer


@pytest.fixture(scope="module")
def openai_server() -> Iterator[ProviderServer]:
    server = RunningServer(OpenAIHandler)
    yield server.info
    server.stop()


def make(name: str, server: ProviderServer):
    if name == "openai":
        return OpenAIProvider(base_url=server.url, api_key=OPENAI_KEY, max_tokens=256)
    if name == "anthropic":
        return AnthropicProvider(base_url=server.url, api_key=ANTHROPIC_KEY, max_tokens=256)
    return OllamaProvider(base_url=server.url, max_tokens=256)


@pytest.fixture(params=["openai", "anthropic", "ollama"])
def wire(request, openai_server, anthropic_server, ollama_server):
    server = {"openai": openai_server, "anthropic": anthropic_server, "ollama": ollama_server}[request.param]
    server.requests.clear()
    server.script = list(agent_script.TURN)
    yield request.param, make(request.param, server), server
    server.script = []


def test_the_scripted_turn_comes_back_as_the_same_tool_calls_in_every_wire_format(wire):
    name, provider, server = wire
    messages: list[AgentMessage] = [
        {"role": "system", "content": "You are an agent."},
        {"role": "user", "content": "Write add() with a test, and make it pass."},
    ]
    streamed: list[str] = []
    for number, expected in enumerate(agent_script.TURN):
        reply = provider.complete_with_tools(
            messages, TOOLS, model="scripted", timeout=5, max_tokens=256, on_text=streamed.append
        )
        assert reply.text == expected.text
        assert [(c.name, c.arguments) for c in reply.tool_calls] == list(expected.calls)
        assert all(c.id for c in reply.tool_calls) and not any(c.invalid_arguments for c in reply.tool_calls)
        assert len({c.id for c in reply.tool_calls}) == len(reply.tool_calls)
        assert reply.input_tokens + reply.output_tokens > 0
        if not reply.tool_calls:
            assert number == len(agent_script.TURN) - 1
            break
        messages.append(
            {
                "role": "assistant",
                "content": reply.text,
                "tool_calls": [
                    {"id": c.id, "name": c.name, "arguments": c.arguments} for c in reply.tool_calls
                ],
            }
        )
        for call in reply.tool_calls:
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": call.id,
                    "name": call.name,
                    "content": f"result of {call.name}",
                }
            )
    assert "".join(streamed) == "".join(r.text for r in agent_script.TURN)
    assert len(server.requests) == len(agent_script.TURN)

    # Every request offers the tools in the service's shape, and the last one carries the whole
    # conversation: the calls, and their results tied to them.
    last = server.requests[-1].body
    if name == "anthropic":
        assert [t["name"] for t in last["tools"]] == [t.name for t in TOOLS]
        assert all("input_schema" in t for t in last["tools"])
        assert last["system"] == "You are an agent."
        roles = [m["role"] for m in last["messages"]]
        assert roles == ["user"] + ["assistant", "user"] * 5  # tool results go in user turns
        first_calls = [b for b in last["messages"][1]["content"] if b["type"] == "tool_use"]
        results = [b for b in last["messages"][2]["content"] if b["type"] == "tool_result"]
        assert (
            [b["id"] for b in first_calls] == [b["tool_use_id"] for b in results] == ["toolu_01", "toolu_02"]
        )
        assert first_calls[0]["input"] == {"path": "calc.py", "content": agent_script.CALC_BUGGY}
    else:
        assert [t["function"]["name"] for t in last["tools"]] == [t.name for t in TOOLS]
        assert all(t["type"] == "function" for t in last["tools"])
        tool_messages = [m for m in last["messages"] if m["role"] == "tool"]
        assert len(tool_messages) == 6
        assistant = next(m for m in last["messages"] if m["role"] == "assistant")
        if name == "openai":
            assert [c["id"] for c in assistant["tool_calls"]] == ["call_0", "call_1"]
            assert assistant["tool_calls"][0]["function"]["arguments"].startswith('{"path": "calc.py"')
            assert [m["tool_call_id"] for m in tool_messages[:2]] == ["call_0", "call_1"]
        else:
            assert assistant["tool_calls"][0]["function"]["arguments"]["path"] == "calc.py"
            assert [m["tool_name"] for m in tool_messages] == [
                "write_file",
                "write_file",
                "run",
                "read_file",
                "edit_file",
                "run",
            ]


@pytest.mark.parametrize("name", ["openai", "ollama"])
def test_a_server_refusing_tools_says_agent_mode_needs_them(name, openai_server, ollama_server):
    server = {"openai": openai_server, "ollama": ollama_server}[name]
    provider = make(name, server)
    with pytest.raises(AgentNeedsTools) as raised:
        provider.complete_with_tools(
            [{"role": "user", "content": "hi"}], TOOLS, model="no-tools", timeout=5, max_tokens=64
        )
    assert raised.value.code == "agent_needs_tools" and raised.value.status_code == 422
    assert "Agent mode needs a model that can call tools" in raised.value.detail
    assert OPENAI_KEY not in raised.value.detail
    # Chat with that model still works.
    assert "".join(provider.stream([{"role": "user", "content": "hi"}], model="no-tools", timeout=5))
