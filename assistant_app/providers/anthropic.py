"""Anthropic: ``POST {ANTHROPIC_BASE_URL}/v1/messages`` with ``"stream": true`` answers
server-sent events: ``message_start``, ``content_block_start``, ``content_block_delta`` (the text,
in ``delta.text``), ``content_block_stop``, ``message_delta``, ``message_stop``, with ``ping`` in
between and ``error`` events when something goes wrong mid-answer.

With ``tools`` (tool use), a ``tool_use`` content block starts with its ``id`` and ``name``, its
input streams as ``input_json_delta`` pieces (``partial_json``), and ``message_delta`` says
``stop_reason: "tool_use"``. Results go back as ``tool_result`` blocks in a user turn."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from typing import Any

from assistant_app.errors import ProviderError
from assistant_app.providers.base import (
    AgentMessage,
    ChatMessage,
    HttpProvider,
    ModelReply,
    ToolCall,
    ToolSpec,
    error_message,
    parse_arguments,
    server_sent_events,
)

API_VERSION = "2023-06-01"


def split_system(messages: Sequence[ChatMessage]) -> tuple[str, list[dict[str, str]]]:
    """The Messages API takes the system prompt apart, and turns that start with the user and
    alternate: merge neighbours of one role, drop answers before the first question."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    turns: list[dict[str, str]] = []
    for message in messages:
        if message["role"] == "system" or (not turns and message["role"] != "user"):
            continue
        if turns and turns[-1]["role"] == message["role"]:
            turns[-1]["content"] += "\n\n" + message["content"]
        else:
            turns.append({"role": message["role"], "content": message["content"]})
    return system, turns


def wire_messages(messages: Sequence[AgentMessage]) -> tuple[str, list[dict[str, Any]]]:
    """The system prompt, and the turns as content blocks: tool calls are ``tool_use`` blocks of
    the assistant, their results ``tool_result`` blocks of the next user turn."""
    system = "\n\n".join(m.get("content", "") for m in messages if m["role"] == "system")
    turns: list[dict[str, Any]] = []
    for message in messages:
        role = message["role"]
        if role == "system":
            continue
        blocks: list[dict[str, Any]] = []
        if role == "tool":
            blocks.append(
                {"type": "tool_result", "tool_use_id": message["tool_call_id"], "content": message["content"]}
            )
            role = "user"
        else:
            if message.get("content"):
                blocks.append({"type": "text", "text": message["content"]})
            for call in message.get("tool_calls") or []:
                blocks.append(
                    {"type": "tool_use", "id": call["id"], "name": call["name"], "input": call["arguments"]}
                )
        if not blocks or (not turns and role != "user"):
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return system, turns


class AnthropicProvider(HttpProvider):
    name = "anthropic"
    label = "Anthropic"
    default_model = "claude-haiku-4-5"
    key_setting = "ANTHROPIC_API_KEY"

    def __init__(self, *, base_url: str, api_key: str, max_tokens: int) -> None:
        super().__init__(base_url=base_url, secrets=[api_key])
        self._api_key = api_key
        self.max_tokens = max_tokens

    def headers(self) -> dict[str, str]:
        return {"x-api-key": self._api_key, "anthropic-version": API_VERSION}

    def stream(self, messages: Sequence[ChatMessage], *, model: str, timeout: float) -> Iterator[str]:
        system, turns = split_system(messages)
        body: dict[str, Any] = {
            "model": model,
            "max_tokens": self.max_tokens,
            "messages": turns,
            "stream": True,
        }
        if system:
            body["system"] = system
        with closing(self.post_lines("/v1/messages", body, timeout=timeout)) as lines:
            for event in server_sent_events(lines):
                try:
                    data = json.loads(event.data) if event.data else {}
                except ValueError:
                    raise self._fail(ProviderError, "Anthropic sent an event that is not JSON.") from None
                kind = data.get("type", event.event) if isinstance(data, dict) else event.event
                if kind == "content_block_delta":
                    delta = data.get("delta") or {}
                    if delta.get("type") == "text_delta" and delta.get("text"):
                        yield delta["text"]
                elif kind == "message_stop":
                    return
                elif kind == "error":
                    raise self.stream_error(error_message(event.data))
        raise self.disconnected()

    def complete_with_tools(
        self,
        messages: Sequence[AgentMessage],
        tools: Sequence[ToolSpec],
        *,
        model: str,
        timeout: float,
        max_tokens: int,
        on_text: Callable[[str], None] | None = None,
    ) -> ModelReply:
        self.tools_requested = True
        system, turns = wire_messages(messages)
        body: dict[str, Any] = {
            "model": model,
            "max_tokens": max_tokens,
            "messages": turns,
            "tools": [
                {"name": t.name, "description": t.description, "input_schema": t.parameters} for t in tools
            ],
            "stream": True,
        }
        if system:
            body["system"] = system
        reply = ModelReply()
        text: list[str] = []
        blocks: dict[int, dict[str, Any]] = {}
        with closing(self.post_lines("/v1/messages", body, timeout=timeout)) as lines:
            for event in server_sent_events(lines):
                try:
                    data = json.loads(event.data) if event.data else {}
                except ValueError:
                    raise self._fail(ProviderError, "Anthropic sent an event that is not JSON.") from None
                if not isinstance(data, dict):
                    continue
                kind = data.get("type", event.event)
                if kind == "message_start":
                    usage = (data.get("message") or {}).get("usage") or {}
                    reply.input_tokens = int(usage.get("input_tokens") or 0)
                elif kind == "content_block_start":
                    block = data.get("content_block") or {}
                    if block.get("type") == "tool_use":
                        blocks[int(data.get("index") or 0)] = {
                            "id": block.get("id") or "",
                            "name": block.get("name") or "",
                            "json": "",
                            "input": block.get("input") or {},
                        }
                elif kind == "content_block_delta":
                    delta = data.get("delta") or {}
                    if delta.get("type") == "text_delta" and delta.get("text"):
                        text.append(delta["text"])
                        if on_text is not None:
                            on_text(delta["text"])
                    elif delta.get("type") == "input_json_delta":
                        block = blocks.get(int(data.get("index") or 0))
                        if block is not None:
                            block["json"] += delta.get("partial_json") or ""
                elif kind == "message_delta":
                    reply.stop_reason = str((data.get("delta") or {}).get("stop_reason") or "")
                    reply.output_tokens = int((data.get("usage") or {}).get("output_tokens") or 0)
                elif kind == "message_stop":
                    break
                elif kind == "error":
                    raise self.stream_error(error_message(event.data))
            else:
                raise self.disconnected()
        reply.text = "".join(text)
        for _, block in sorted(blocks.items()):
            arguments, invalid = parse_arguments(block["json"] or block["input"])
            reply.tool_calls.append(
                ToolCall(id=block["id"], name=block["name"], arguments=arguments, invalid_arguments=invalid)
            )
        return reply
