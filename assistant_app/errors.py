"""Domain errors of the assistant; each has an HTTP status and a stable code.

Provider errors carry a sentence for a person. They never contain an API key: the clients remove
every configured secret from whatever text a provider sends back before it becomes a ``detail``.
"""

from __future__ import annotations

from core_app.errors import DomainError


class AssistantNotConfigured(DomainError):
    status_code = 503
    code = "assistant_not_configured"
    default_detail = "The AI assistant is not set up on this server."


class ContextTooLarge(DomainError):
    status_code = 413
    code = "context_too_large"
    default_detail = "The question and the selected code are too long for the assistant."


class ProviderError(DomainError):
    """The model provider failed: an error status, an error event, or a broken answer."""

    status_code = 502
    code = "provider_error"
    default_detail = "The AI model provider answered with an error."


class ProviderUnreachable(ProviderError):
    status_code = 503
    code = "provider_unreachable"
    default_detail = "The AI model provider cannot be reached."


class ProviderTimeout(ProviderError):
    status_code = 504
    code = "provider_timeout"
    default_detail = "The AI model provider did not answer in time."


class ProviderDisconnected(ProviderError):
    code = "provider_disconnected"
    default_detail = "The AI model provider dropped the connection before the answer was complete."


class AgentNeedsTools(ProviderError):
    """The configured model or server cannot call tools, which agent mode is made of."""

    status_code = 422
    code = "agent_needs_tools"
    default_detail = (
        "Agent mode needs a model that can call tools, and this one can't. Chat still works; "
        "ask the administrator for a tool-calling model (e.g. llama3.1+, qwen2.5, gpt-4o-mini, Claude)."
    )
