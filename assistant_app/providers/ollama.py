"""Ollama: ``POST {OLLAMA_URL}/api/chat`` with ``"stream": true`` answers newline-delimited JSON,
one object per piece of the answer (``message.content``), the last one with ``"done": true``.
Errors come as an error status with ``{"error": "..."}``, or as such a line mid-stream.

With ``tools``, a line's ``message.tool_calls`` carries whole calls
(``{"function": {"name", "arguments": {...}}}``, no id on older servers); results go back as
``{"role": "tool", "content", "tool_name"}``. A model without tool support answers 400
``... does not support tools``."""

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
    function_tools,
    parse_arguments,
)


def wire_message(message: AgentMessage) -> dict[str, Any]:
    role = message["role"]
    if role == "tool":
        return {"role": "tool", "content": message["content"], "tool_name": message.get("name", "")}
    wired: dict[str, Any] = {"role": role, "content": message.get("content", "")}
    if message.get("tool_calls"):
        wired["tool_calls"] = [
            {"function": {"name": call["name"], "arguments": call["arguments"]}}
            for call in message["tool_calls"]
        ]
    return wired


class OllamaProvider(HttpProvider):
    name = "ollama"
    label = "Ollama"
    default_model = "llama3.2"

    def __init__(self, *, base_url: str, max_tokens: int) -> None:
        super().__init__(base_url=base_url)
        self.max_tokens = max_tokens

    def _objects(self, lines: Iterator[str]) -> Iterator[dict[str, Any]]:
        """The stream's lines as objects; an error line raises."""
        for line in lines:
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except ValueError:
                raise self._fail(ProviderError, "Ollama sent a line that is not JSON.") from None
            if not isinstance(data, dict):
                continue
            if data.get("error"):
                raise self.stream_error(str(data["error"]))
            yield data

    def stream(self, messages: Sequence[ChatMessage], *, model: str, timeout: float) -> Iterator[str]:
        body = {
            "model": model,
            "messages": [dict(message) for message in messages],
            "stream": True,
            "options": {"num_predict": self.max_tokens},
        }
        with closing(self.post_lines("/api/chat", body, timeout=timeout)) as lines:
            for data in self._objects(lines):
                text = (data.get("message") or {}).get("content") or ""
                if text:
                    yield text
                if data.get("done"):
                    return
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
        body = {
            "model": model,
            "messages": [wire_message(message) for message in messages],
            "tools": function_tools(tools),
            "stream": True,
            "options": {"num_predict": max_tokens},
        }
        reply = ModelReply()
        text: list[str] = []
        with closing(self.post_lines("/api/chat", body, timeout=timeout)) as lines:
            for data in self._objects(lines):
                message = data.get("message") or {}
                if message.get("content"):
                    text.append(message["content"])
                    if on_text is not None:
                        on_text(message["content"])
                for call in message.get("tool_calls") or []:
                    function = call.get("function") or {}
                    arguments, invalid = parse_arguments(function.get("arguments"))
                    reply.tool_calls.append(
                        ToolCall(
                            id=call.get("id") or f"call_{len(reply.tool_calls)}",
                            name=str(function.get("name") or ""),
                            arguments=arguments,
                            invalid_arguments=invalid,
                        )
                    )
                if data.get("done"):
                    reply.stop_reason = str(data.get("done_reason") or "stop")
                    reply.input_tokens = int(data.get("prompt_eval_count") or 0)
                    reply.output_tokens = int(data.get("eval_count") or 0)
                    reply.text = "".join(text)
                    return reply
        raise self.disconnected()
