"""Model providers behind one interface (:class:`~assistant_app.providers.base.Provider`), and the
choice among them made by the settings.

``VIBECODE_ASSISTANT_PROVIDER=auto`` takes the first configured of Ollama (``OLLAMA_URL``),
OpenAI-compatible (``OPENAI_API_KEY`` or ``OPENAI_BASE_URL``) and Anthropic (``ANTHROPIC_API_KEY``).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from assistant_app.errors import AssistantNotConfigured
from assistant_app.providers.anthropic import AnthropicProvider
from assistant_app.providers.base import ChatMessage, Provider
from assistant_app.providers.ollama import OllamaProvider
from assistant_app.providers.openai import OpenAIProvider

__all__ = ["AssistantStatus", "ChatMessage", "Provider", "assistant_status", "get_provider"]

ORDER = ("ollama", "openai", "anthropic")

NOT_CONFIGURED_HINT = (
    "The AI assistant is not set up: ask the administrator to set OLLAMA_URL, OPENAI_API_KEY "
    "(or OPENAI_BASE_URL for a llama.cpp, vLLM or LM Studio server) or ANTHROPIC_API_KEY, "
    "then restart VibeCode."
)
TURNED_OFF_HINT = "The AI assistant is turned off on this server (VIBECODE_ASSISTANT_PROVIDER=none)."


@dataclass(frozen=True)
class AssistantStatus:
    configured: bool
    provider: str | None
    model: str | None
    hint: str


def _configured(name: str) -> bool:
    if name == "ollama":
        return bool(settings.OLLAMA_URL)
    if name == "openai":
        return bool(settings.OPENAI_API_KEY or settings.OPENAI_BASE_URL)
    return bool(settings.ANTHROPIC_API_KEY)


def _provider_name() -> str | None:
    choice = settings.VIBECODE_ASSISTANT_PROVIDER
    if choice == "auto":
        return next((name for name in ORDER if _configured(name)), None)
    if choice in ORDER and _configured(choice):
        return choice
    return None


def _build(name: str) -> Provider:
    max_tokens = settings.VIBECODE_ASSISTANT_MAX_TOKENS
    if name == "ollama":
        return OllamaProvider(base_url=settings.OLLAMA_URL, max_tokens=max_tokens)
    if name == "openai":
        return OpenAIProvider(
            base_url=settings.OPENAI_BASE_URL, api_key=settings.OPENAI_API_KEY, max_tokens=max_tokens
        )
    return AnthropicProvider(
        base_url=settings.ANTHROPIC_BASE_URL, api_key=settings.ANTHROPIC_API_KEY, max_tokens=max_tokens
    )


def _hint() -> str:
    return TURNED_OFF_HINT if settings.VIBECODE_ASSISTANT_PROVIDER == "none" else NOT_CONFIGURED_HINT


def get_provider() -> tuple[Provider, str]:
    """The configured provider and the model to ask, or ``AssistantNotConfigured``."""
    name = _provider_name()
    if name is None:
        raise AssistantNotConfigured(_hint())
    provider = _build(name)
    return provider, settings.VIBECODE_ASSISTANT_MODEL or provider.default_model


def assistant_status() -> AssistantStatus:
    """What the IDE shows: which provider and model answer, or one sentence on what to set."""
    name = _provider_name()
    if name is None:
        return AssistantStatus(configured=False, provider=None, model=None, hint=_hint())
    provider, model = get_provider()
    return AssistantStatus(configured=True, provider=provider.name, model=model, hint="")
