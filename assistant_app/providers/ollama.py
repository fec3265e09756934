"""Ollama: ``POST {OLLAMA_URL}/api/chat`` with ``"stream": true`` answers newline-delimited JSON,
one object per piece of the answer (``message.content``), the last one with ``"done": true``.
Errors come as an error status with ``{"error": "..."}``, or as such a line mid-stream."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import closing

from assistant_app.errors import ProviderError
from assistant_app.providers.base import ChatMessage, HttpProvider


class OllamaProvider(HttpProvider):
    name = "ollama"
    label = "Ollama"
    default_model = "llama3.2"

    def __init__(self, *, base_url: str, max_tokens: int) -> None:
        super().__init__(base_url=base_url)
        self.max_tokens = max_tokens

    def stream(self, messages: Sequence[ChatMessage], *, model: str, timeout: float) -> Iterator[str]:
        body = {
            "model": model,
            "messages": [dict(message) for message in messages],
            "stream": True,
            "options": {"num_predict": self.max_tokens},
        }
        with closing(self.post_lines("/api/chat", body, timeout=timeout)) as lines:
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
                text = (data.get("message") or {}).get("content") or ""
                if text:
                    yield text
                if data.get("done"):
                    return
        raise self.disconnected()
