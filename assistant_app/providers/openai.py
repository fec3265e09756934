"""OpenAI-compatible: ``POST {OPENAI_BASE_URL}/chat/completions`` with ``"stream": true`` answers
server-sent events whose ``data:`` is a chunk (``choices[0].delta.content``), ending with
``data: [DONE]``. The same wire is spoken by llama.cpp's server, vLLM, LM Studio and others.

With ``tools`` (function calling), a streamed answer carries ``delta.tool_calls``: pieces keyed by
``index``, the first with the call's ``id`` and ``function.name``, then ``function.arguments`` in
fragments of a JSON string; the chunk with ``finish_reason: "tool_calls"`` ends the step."""

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
    function_tools,
    parse_arguments,
    server_sent_events,
)

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class OpenAIProvider(HttpProvider):
    name = "openai"
    label = "The OpenAI-compatible provider"
    default_model = "gpt-4o-mini"
    key_setting = "OPENAI_API_KEY"

    def __init__(self, *, base_url: str, api_key: str, max_tokens: int) -> None:
        super().__init__(base_url=base_url or DEFAULT_BASE_URL, secrets=[api_key])
        self._api_key = api_key
        self.max_tokens = max_tokens

    def headers(self) -> dict[str, str]:
        # Local servers (llama.cpp, LM Studio) take no key; then no Authorization is sent at all.
        return {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    def stream(self, messages: Sequence[ChatMessage], *, model: str, timeout: float) -> Iterator[str]:
        body = {
            "model": model,
            "messages": [dict(message) for message in messages],
            "stream": True,
            "max_tokens": self.max_tokens,
        }
        finished = False
        with closing(self.post_lines("/chat/completions", body, timeout=timeout)) as lines:
            for data in self._chunks(lines):
                if data is None:
                    return
                for choice in data.get("choices") or []:
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        yield text
                    finished = finished or bool(choice.get("finish_reason"))
        if not finished:  # some servers end with a finish_reason and no [DONE]: that is complete
            raise self.disconnected()

    def _chunks(self, lines: Iterator[str]) -> Iterator[dict[str, Any] | None]:
        """The stream's chunks as objects, then None for ``[DONE]``; an error chunk raises."""
        for event in server_sent_events(lines):
            if event.data.strip() == "[DONE]":
                yield None
                return
            try:
                data = json.loads(event.data)
            except ValueError:
                raise self._fail(ProviderError, f"{self.label} sent an event that is not JSON.") from None
            if not isinstance(data, dict):
                continue
            if data.get("error"):
                raise self.stream_error(error_message(event.data))
            yield data

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
        body: dict[str, Any] = {
            "model": model,
            "messages": [wire_message(message) for message in messages],
            "tools": function_tools(tools),
            "tool_choice": "auto",
            "stream": True,
            "max_tokens": max_tokens,
        }
        reply = ModelReply()
        text: list[str] = []
        calls: dict[int, dict[str, Any]] = {}
        finished = False
        with closing(self.post_lines("/chat/completions", body, timeout=timeout)) as lines:
            for data in self._chunks(lines):
                if data is None:
                    finished = True
                    break
                usage = data.get("usage") or {}
                reply.input_tokens = int(usage.get("prompt_tokens") or reply.input_tokens)
                reply.output_tokens = int(usage.get("completion_tokens") or reply.output_tokens)
                for choice in data.get("choices") or []:
                    delta = choice.get("delta") or {}
                    if delta.get("content"):
                        text.append(delta["content"])
                        if on_text is not None:
                            on_text(delta["content"])
                    for piece in delta.get("tool_calls") or []:
                        call = calls.setdefault(
                            int(piece.get("index") or 0), {"id": "", "name": "", "args": ""}
                        )
                        function = piece.get("function") or {}
                        call["id"] = piece.get("id") or call["id"]
                        call["name"] += function.get("name") or ""
                        arguments = function.get("arguments")
                        # A few servers send the arguments whole, as an object.
                        call["args"] += (
                            arguments if isinstance(arguments, str) else json.dumps(arguments or {})
                        )
                    if choice.get("finish_reason"):
                        finished = True
                        reply.stop_reason = str(choice["finish_reason"])
        if not finished:
            raise self.disconnected()
        reply.text = "".join(text)
        for number, (_, call) in enumerate(sorted(calls.items())):
            arguments, invalid = parse_arguments(call["args"])
            reply.tool_calls.append(
                ToolCall(
                    id=call["id"] or f"call_{number}",
                    name=call["name"],
                    arguments=arguments,
                    invalid_arguments=invalid,
                )
            )
        return reply


def wire_message(message: AgentMessage) -> dict[str, Any]:
    """An internal message in OpenAI's chat format."""
    role = message["role"]
    if role == "tool":
        return {"role": "tool", "tool_call_id": message["tool_call_id"], "content": message["content"]}
    if role == "assistant" and message.get("tool_calls"):
        return {
            "role": "assistant",
            "content": message.get("content") or None,
            "tool_calls": [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["name"], "arguments": json.dumps(call["arguments"])},
                }
                for call in message["tool_calls"]
            ],
        }
    return {"role": role, "content": message.get("content", "")}
