"""The assistant's writes: answer a question about the user's code (streamed, then stored), and
clear a conversation."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db import transaction

from assistant_app import providers
from assistant_app.context import ChatRequest, Turn, build_prompt
from assistant_app.errors import ProviderError
from assistant_app.models import Conversation, Message
from sessions_app.models import Session

logger = logging.getLogger(__name__)

HISTORY_TURNS = 40

Event = dict[str, Any]


def assistant_chat(*, session: Session, request: ChatRequest) -> Iterator[Event]:
    """Ask the configured model about ``request`` and return the answer as events, as it arrives:
    ``{"type": "delta", "text"}``..., then ``{"type": "done"}`` or ``{"type": "error", "code",
    "message"}``.

    Raises before the first event: ``AssistantNotConfigured`` (503), ``ContextTooLarge`` (413),
    and the provider's errors when it fails before its first words (``provider_unreachable`` 503,
    ``provider_timeout`` 504, ``provider_error`` 502); then nothing is stored. Once the answer has
    begun, the question and the answer are stored; an answer cut short (a provider error, the
    provider or the client going away) keeps what arrived, marked ``incomplete``.
    """
    provider, model = providers.get_provider()
    conversation, _ = Conversation.objects.get_or_create(session=session)
    recent = Message.objects.filter(conversation=conversation).order_by("-created_at", "-id")[:HISTORY_TURNS]
    history = [Turn(role=m.role, content=m.content) for m in reversed(recent) if m.content]
    prompt = build_prompt(
        request=request, history=history, max_chars=settings.VIBECODE_ASSISTANT_MAX_CONTEXT_CHARS
    )

    started = time.monotonic()
    deltas = provider.stream(
        prompt.messages, model=model, timeout=settings.VIBECODE_ASSISTANT_TIMEOUT_SECONDS
    )
    try:
        first = next(deltas, None)
    except ProviderError as exc:
        logger.warning(
            "assistant session=%s provider=%s failed before answering: %s",
            session.public_id,
            provider.name,
            exc.code,
        )
        raise
    Message.objects.create(
        conversation=conversation, role=Message.Role.USER, content=prompt.user_text, action=request.action
    )
    logger.info(
        "assistant session=%s provider=%s model=%s action=%s context_chars=%d first_words_ms=%.0f",
        session.public_id,
        provider.name,
        model,
        request.action,
        prompt.chars,
        (time.monotonic() - started) * 1000,
    )
    return _answer(
        conversation=conversation,
        session_id=session.public_id,
        deltas=deltas,
        first=first,
        provider=provider.name,
        model=model,
        started=started,
    )


def _store_answer(
    *, conversation: Conversation, text: str, provider: str, model: str, error_code: str = ""
) -> Message:
    with transaction.atomic():
        message = Message.objects.create(
            conversation=conversation,
            role=Message.Role.ASSISTANT,
            content=text,
            incomplete=bool(error_code),
            error_code=error_code,
            provider=provider,
            model=model,
        )
        Conversation.objects.filter(pk=conversation.pk).update(updated_at=message.created_at)
    return message


def _answer(
    *,
    conversation: Conversation,
    session_id: str,
    deltas: Iterator[str],
    first: str | None,
    provider: str,
    model: str,
    started: float,
) -> Iterator[Event]:
    parts: list[str] = []

    def store(error_code: str = "") -> Message:
        return _store_answer(
            conversation=conversation,
            text="".join(parts),
            provider=provider,
            model=model,
            error_code=error_code,
        )

    try:
        if first is not None:
            parts.append(first)
            yield {"type": "delta", "text": first}
        for text in deltas:
            parts.append(text)
            yield {"type": "delta", "text": text}
    except ProviderError as exc:
        message = store(exc.code)
        logger.warning(
            "assistant session=%s provider=%s answer cut short after %d chars: %s",
            session_id,
            provider,
            len(message.content),
            exc.code,
        )
        yield {"type": "error", "code": exc.code, "message": exc.detail, "message_id": message.pk}
        return
    except GeneratorExit:  # the client went away: keep what arrived
        close = getattr(deltas, "close", None)
        if close is not None:
            close()
        store("client_disconnected")
        logger.info("assistant session=%s client went away mid-answer", session_id)
        raise
    except Exception:
        # A bug, not the provider. The response has begun, so say so in the stream (never a
        # traceback), keep what arrived, and log it in full.
        logger.exception("assistant session=%s failed mid-answer", session_id)
        message = store("server_error")
        yield {
            "type": "error",
            "code": "server_error",
            "message": "Something went wrong on the server. It has been logged.",
            "message_id": message.pk,
        }
        return
    message = store()
    logger.info(
        "assistant session=%s answered %d chars in %.0f ms",
        session_id,
        len(message.content),
        (time.monotonic() - started) * 1000,
    )
    yield {"type": "done", "message_id": message.pk}


def conversation_clear(*, session: Session) -> int:
    """Delete the session's conversation with the assistant; the number of messages removed."""
    deleted, _ = Message.objects.filter(conversation__session=session).delete()
    return deleted
