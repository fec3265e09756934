"""The one small interface every model provider implements, and the HTTP plumbing they share.

Contract of :meth:`Provider.stream`:

* It returns a lazy iterator: nothing is sent until the first ``next()``.
* It yields the answer's text as it arrives, in pieces (deltas) of any size, never an empty one.
* It ends normally only when the provider said the answer is complete.
* It raises :class:`ProviderUnreachable` when the provider cannot be connected to,
  :class:`ProviderTimeout` when it sends nothing for ``timeout`` seconds, :class:`ProviderError`
  for an error status or an error in the stream, and :class:`ProviderDisconnected` when the
  stream ends before the provider said the answer was complete. Deltas already yielded stay valid.
* Closing the iterator early closes the HTTP connection.
* No API key ever appears in an exception's text or in a log line.

Contract of :meth:`Provider.complete_with_tools` (agent mode): one model step with tools, in the
one internal shape (:class:`ToolSpec`, :class:`AgentMessage`, :class:`ModelReply`) that each
provider translates to its wire format. It streams from the provider (tool calls arrive in
pieces), calls ``on_text`` with text deltas as they come, and returns the whole reply: its text
and its tool calls with their arguments parsed. It raises the errors of :meth:`stream`, and
:class:`~assistant_app.errors.AgentNeedsTools` when the provider or model refuses tools.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

import httpx

from assistant_app.errors import (
    AgentNeedsTools,
    ProviderDisconnected,
    ProviderError,
    ProviderTimeout,
    ProviderUnreachable,
)

logger = logging.getLogger(__name__)

# Connecting should be quick even when answering is slow (a model loading, a long answer).
CONNECT_TIMEOUT_SECONDS = 10.0
DETAIL_MAX_CHARS = 300


class ChatMessage(TypedDict):
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True)
class ToolSpec:
    """A tool the model may call: a name, what it does, and its arguments as JSON Schema."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]
    # Arguments that were not a JSON object: the call is answered with an error, not run.
    invalid_arguments: str = ""


class AgentMessage(TypedDict, total=False):
    """The conversation of an agent turn, provider-neutral.

    ``system`` / ``user``: ``content``. ``assistant``: ``content`` and ``tool_calls``
    (``[{"id", "name", "arguments": dict}]``). ``tool``: ``tool_call_id``, ``name``, ``content``.
    """

    role: Literal["system", "user", "assistant", "tool"]
    content: str
    tool_calls: list[dict[str, Any]]
    tool_call_id: str
    name: str


@dataclass
class ModelReply:
    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    stop_reason: str = ""


def function_tools(tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    """``tools`` in the function-calling shape that OpenAI's API and Ollama's both take."""
    return [
        {
            "type": "function",
            "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
        }
        for t in tools
    ]


def parse_arguments(raw: str | dict[str, Any] | None) -> tuple[dict[str, Any], str]:
    """A tool call's arguments as a dict, or ``({}, the raw text)`` when they are not an object."""
    if isinstance(raw, dict):
        return raw, ""
    text = (raw or "").strip()
    if not text:
        return {}, ""
    try:
        value = json.loads(text)
    except ValueError:
        return {}, text[:500]
    return (value, "") if isinstance(value, dict) else ({}, text[:500])


TOOLS_REFUSED = ("tool", "function")


def refuses_tools(message: str) -> bool:
    """An error a server answers when the model or server does not do tool calling."""
    lowered = message.lower()
    return any(word in lowered for word in TOOLS_REFUSED) and any(
        word in lowered for word in ("support", "not allowed", "unknown", "unrecognized", "invalid")
    )


class Provider(ABC):
    name: str  # "ollama", "openai", "anthropic": the value of VIBECODE_ASSISTANT_PROVIDER
    label: str  # for people: "Ollama"
    default_model: str
    # The variable to check when the provider refuses the credentials, e.g. "OPENAI_API_KEY".
    key_setting: str = ""

    @abstractmethod
    def stream(self, messages: Sequence[ChatMessage], *, model: str, timeout: float) -> Iterator[str]:
        """Yield the answer to ``messages`` as text deltas (see the module docstring)."""

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
        """One agent step (see the module docstring). Providers without tool calling refuse."""
        raise AgentNeedsTools()


@dataclass(frozen=True)
class ServerSentEvent:
    event: str
    data: str


def server_sent_events(lines: Iterator[str]) -> Iterator[ServerSentEvent]:
    """Parse ``text/event-stream`` lines (WHATWG HTML, "Server-sent events") into events."""
    event, data = "", list[str]()
    for line in lines:
        if line == "":
            if data or event:
                yield ServerSentEvent(event or "message", "\n".join(data))
            event, data = "", []
            continue
        if line.startswith(":"):
            continue  # a comment, often a keep-alive
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)
    if data:
        # A stream cut without its final blank line: hand over what arrived, the caller decides.
        yield ServerSentEvent(event or "message", "\n".join(data))


def scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def error_message(body: bytes | str) -> str:
    """The human message inside a provider's error body (Ollama, OpenAI and Anthropic shapes)."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        data: Any = json.loads(text)
    except ValueError:
        return text.strip()
    if isinstance(data, dict):
        error = data.get("error", data)
        if isinstance(error, dict):
            return str(error.get("message") or error.get("type") or json.dumps(error))
        return str(error)
    return text.strip()


def short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= DETAIL_MAX_CHARS else text[: DETAIL_MAX_CHARS - 1] + "…"


class HttpProvider(Provider):
    """A provider reached over HTTP with one streaming POST."""

    # Set while a request with tools is under way: an error about tools then means "no tools".
    tools_requested = False

    def __init__(self, *, base_url: str, secrets: Sequence[str] = ()) -> None:
        self.base_url = base_url.rstrip("/")
        self._secrets = tuple(s for s in secrets if s)

    def headers(self) -> dict[str, str]:
        return {}

    def _fail(self, error_class: type[ProviderError], detail: str) -> ProviderError:
        return error_class(short(scrub(detail, self._secrets)))

    def post_lines(self, path: str, body: dict[str, Any], *, timeout: float) -> Generator[str, None, None]:
        """POST ``body`` as JSON and yield the response's lines as they arrive; HTTP and transport
        failures become provider errors."""
        url = self.base_url + path
        timeouts = httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT_SECONDS))
        try:
            with (
                httpx.Client(timeout=timeouts) as client,
                client.stream("POST", url, json=body, headers=self.headers()) as response,
            ):
                if response.status_code >= 400:
                    response.read()
                    raise self.status_error(response.status_code, error_message(response.content))
                yield from response.iter_lines()
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            logger.warning(
                "assistant provider %s unreachable at %s: %s",
                self.name,
                httpx.URL(url).host,
                type(exc).__name__,
            )
            raise self._fail(
                ProviderUnreachable,
                f"{self.label} cannot be reached. Check that it is running and that the server's "
                f"settings point at it.",
            ) from None
        except httpx.TimeoutException as exc:
            logger.warning("assistant provider %s timed out: %s", self.name, type(exc).__name__)
            raise self._fail(
                ProviderTimeout, f"{self.label} sent nothing for {timeout:g} seconds, so VibeCode gave up."
            ) from None
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            logger.warning("assistant provider %s dropped the connection: %s", self.name, type(exc).__name__)
            raise self.disconnected() from None
        except httpx.HTTPError as exc:
            logger.warning("assistant provider %s failed: %s", self.name, type(exc).__name__)
            raise self._fail(ProviderError, f"{self.label} failed: {type(exc).__name__}.") from None

    def status_error(self, status: int, message: str) -> ProviderError:
        if self.tools_requested and status in (400, 404, 422, 500, 501) and refuses_tools(message):
            logger.warning("assistant provider %s refused tools (%s)", self.name, status)
            return self._fail(
                AgentNeedsTools,
                f"{AgentNeedsTools.default_detail} {self.label} said: {message or 'no reason given'}.",
            )
        hint = ""
        if status in (401, 403) and self.key_setting:
            hint = f" Check {self.key_setting} on the server."
        logger.warning("assistant provider %s answered %s", self.name, status)
        return self._fail(
            ProviderError, f"{self.label} answered {status}: {message or 'no reason given'}.{hint}"
        )

    def stream_error(self, message: str) -> ProviderError:
        logger.warning("assistant provider %s reported an error in the stream", self.name)
        return self._fail(ProviderError, f"{self.label} reported an error: {message or 'no reason given'}.")

    def disconnected(self) -> ProviderError:
        return self._fail(
            ProviderDisconnected, f"{self.label} dropped the connection before the answer was complete."
        )
