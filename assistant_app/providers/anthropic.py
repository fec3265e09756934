"""Anthropic: ``POST {ANTHROPIC_BASE_URL}/v1/messages`` with ``"stream": true`` answers
server-sent events: ``message_start``, ``content_block_start``, ``content_block_delta`` (the text,
in ``delta.text``), ``content_block_stop``, ``message_delta``, ``message_stop``, with ``ping`` in
between and ``error`` events when something goes wrong mid-answer."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import closing
from typing import Any

from assistant_app.errors import ProviderError
from assistant_app.providers.base import ChatMessage, HttpProvider, error_message, server_sent_events

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
