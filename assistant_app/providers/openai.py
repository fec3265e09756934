"""OpenAI-compatible: ``POST {OPENAI_BASE_URL}/chat/completions`` with ``"stream": true`` answers
server-sent events whose ``data:`` is a chunk (``choices[0].delta.content``), ending with
``data: [DONE]``. The same wire is spoken by llama.cpp's server, vLLM, LM Studio and others."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import closing

from assistant_app.errors import ProviderError
from assistant_app.providers.base import ChatMessage, HttpProvider, error_message, server_sent_events

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
            for event in server_sent_events(lines):
                if event.data.strip() == "[DONE]":
                    return
                try:
                    data = json.loads(event.data)
                except ValueError:
                    raise self._fail(ProviderError, f"{self.label} sent an event that is not JSON.") from None
                if not isinstance(data, dict):
                    continue
                if data.get("error"):
                    raise self.stream_error(error_message(event.data))
                for choice in data.get("choices") or []:
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        yield text
                    finished = finished or bool(choice.get("finish_reason"))
        if not finished:  # some servers end with a finish_reason and no [DONE]: that is complete
            raise self.disconnected()
