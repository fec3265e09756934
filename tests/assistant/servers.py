"""Local HTTP servers speaking the model providers' documented streaming wire formats.

They stand in for the paid services only (the house allows nothing else): Ollama's ``/api/chat``
(newline-delimited JSON, https://github.com/ollama/ollama/blob/main/docs/api.md), Anthropic's
``/v1/messages`` (server-sent events, https://docs.anthropic.com/en/api/messages-streaming) and
OpenAI's ``/chat/completions`` (server-sent events ending in ``data: [DONE]``; the real
OpenAI-compatible wire is also tested against llama.cpp's server). The
requested model name picks what the server does (or ``scenario=<name>`` in the last message, for
a daphne whose model is fixed), so one server covers every case:

``missing``     an error status with the service's error body
``bad-key``     401, with a message that (unlike the real services) echoes the key back
``drop``        two pieces of the answer, then the connection is cut mid-body
``error-mid``   one piece, then an error inside the stream
``slow``        nothing for 3 seconds
``trickle``     the answer in pieces 0.4 s apart (to see streaming through daphne)
``html``        an answer trying to smuggle markup into the page (``HTML_ANSWER``)
``markdown``    markdown with a list, a table, links, a code block and hostile bits, in pieces 0.2 s
                apart (``MARKDOWN_ANSWER_PIECES``)
``scripted``    agent mode: the next reply of the server's ``script`` (one per request, then
                ``SCRIPT_END``), with its tool calls streamed as each wire format streams them
anything else   the answer ``ANSWER`` in pieces, properly finished
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ANSWER_PIECES = ["Hello", " from", " the", " local", " model.\n", "```python\nprint(42)\n```\n"]
ANSWER = "".join(ANSWER_PIECES)
HTML_ANSWER_PIECES = ['<img src="x" onerror="window.__pwned = 1">', " and <b>bold</b> `<script>`"]
MARKDOWN_ANSWER_PIECES = [
    "### Steps\n\n",
    "1. **Open** the file\n2. Run it\n\n",
    "- one\n- two\n\n",
    "```python\nprint('md')\n```\n",
    "| Name | Value |\n|------|-------|\n| a | 1 |\n| b | 2 |\n\n",
    "See [the docs](https://docs.python.org/3/) and [bad](javascript:window.__pwned=1) ",
    '<img src=x onerror="window.__pwned = 2"> <a href="javascript:window.__pwned=3">x</a>\n\n',
    "![pic](https://example.invalid/p.png) done.",
]


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass(frozen=True)
class Reply:
    """One scripted model reply: some text, and tool calls ``(name, arguments)``."""

    text: str = ""
    calls: tuple[tuple[str, dict[str, Any]], ...] = ()


SCRIPT_END = Reply("Nothing more to do.")


@dataclass
class ProviderServer:
    url: str
    requests: list[Seen] = field(default_factory=list)
    script: list[Reply] = field(default_factory=list)

    def next_reply(self) -> Reply:
        scripted = [r for r in self.requests if r.body.get("model") == "scripted"]
        number = len(scripted) - 1
        return self.script[number] if number < len(self.script) else SCRIPT_END


def fragments(text: str, count: int = 3) -> list[str]:
    """``text`` cut in ``count`` pieces, as servers stream a tool call's JSON arguments."""
    size = max(1, -(-len(text) // count))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    # --- wire helpers --------------------------------------------------------------------------
    def start(self, status: int, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def chunk(self, data: str) -> None:
        raw = data.encode()
        self.wfile.write(f"{len(raw):x}\r\n".encode() + raw + b"\r\n")
        self.wfile.flush()

    def finish_body(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def cut(self) -> None:
        """Drop the connection in the middle of the body (no final chunk)."""
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)
        self.close_connection = True

    def json_error(self, status: int, body: dict[str, Any]) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        self.server.seen.requests.append(
            Seen(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        )
        last = str((body.get("messages") or [{}])[-1].get("content", ""))
        asked = re.search(r"scenario=([\w-]+)", last)
        self.answer(asked.group(1) if asked else body.get("model", ""), body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    seen: ProviderServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (the timeout tests) leaves a broken pipe: expected


class OllamaHandler(_Handler):
    def line(self, data: dict[str, Any]) -> None:
        self.chunk(json.dumps(data) + "\n")

    def piece(self, model: str, text: str) -> None:
        self.line(
            {
                "model": model,
                "created_at": "2026-01-01T00:00:00.000000Z",
                "message": {"role": "assistant", "content": text},
                "done": False,
            }
        )

    def answer(self, model: str, body: dict[str, Any]) -> None:
        if self.path != "/api/chat":
            return self.json_error(404, {"error": "404 page not found"})
        if model == "missing":
            return self.json_error(404, {"error": f'model "{model}" not found, try pulling it first'})
        if model == "no-tools" and body.get("tools"):
            return self.json_error(
                400, {"error": f"registry.ollama.ai/library/{model} does not support tools"}
            )
        if model == "scripted":
            return self.scripted(model, self.server.seen.next_reply())
        if model == "slow":
            time.sleep(3)
        self.start(200, "application/x-ndjson")
        pieces = {"html": HTML_ANSWER_PIECES, "markdown": MARKDOWN_ANSWER_PIECES}.get(model, ANSWER_PIECES)
        for number, text in enumerate(pieces):
            if model == "drop" and number == 2:
                return self.cut()
            if model == "error-mid" and number == 1:
                self.line({"error": "an error was encountered while running the model: out of memory"})
                return self.finish_body()
            if model == "trickle" and number:
                time.sleep(0.4)
            if model == "markdown" and number:
                time.sleep(0.2)
            self.piece(model, text)
        self.line(
            {
                "model": model,
                "created_at": "2026-01-01T00:00:01.000000Z",
                "message": {"role": "assistant", "content": ""},
                "done": True,
                "done_reason": "stop",
                "total_duration": 4883583458,
                "eval_count": len(pieces),
            }
        )
        self.finish_body()

    def scripted(self, model: str, reply: Reply) -> None:
        self.start(200, "application/x-ndjson")
        for text in fragments(reply.text) if reply.text else []:
            self.piece(model, text)
        if reply.calls:  # Ollama sends each call whole, in one message
            self.line(
                {
                    "model": model,
                    "created_at": "2026-01-01T00:00:00.500000Z",
                    "message": {
                        "role": "assistant",
                        "content": "",
                        "tool_calls": [{"function": {"name": n, "arguments": a}} for n, a in reply.calls],
                    },
                    "done": False,
                }
            )
        self.line(
            {
                "model": model,
                "created_at": "2026-01-01T00:00:01.000000Z",
                "message": {"role": "assistant", "content": ""},
                "done": True,
                "done_reason": "stop",
                "prompt_eval_count": 120,
                "eval_count": 30,
            }
        )
        self.finish_body()


class AnthropicHandler(_Handler):
    def event(self, name: str, data: dict[str, Any]) -> None:
        self.chunk(f"event: {name}\ndata: {json.dumps(data)}\n\n")

    def answer(self, model: str, body: dict[str, Any]) -> None:
        if self.path != "/v1/messages":
            return self.json_error(
                404, {"type": "error", "error": {"type": "not_found_error", "message": "Not found"}}
            )
        if model == "missing":
            return self.json_error(
                404, {"type": "error", "error": {"type": "not_found_error", "message": f"model: {model}"}}
            )
        if model == "bad-key":
            key = self.headers.get("x-api-key", "")
            return self.json_error(
                401,
                {
                    "type": "error",
                    "error": {"type": "authentication_error", "message": f"invalid x-api-key {key}"},
                },
            )
        if model == "scripted":
            return self.scripted(model, self.server.seen.next_reply())
        if model == "slow":
            time.sleep(3)
        self.start(200, "text/event-stream")
        message = {
            "id": "msg_01",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": model,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 25, "output_tokens": 1},
        }
        self.event("message_start", {"type": "message_start", "message": message})
        self.event(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        )
        self.event("ping", {"type": "ping"})
        for number, text in enumerate(ANSWER_PIECES):
            if model == "drop" and number == 2:
                return self.cut()
            if model == "error-mid" and number == 1:
                self.event(
                    "error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
                )
                return self.finish_body()
            if model == "trickle" and number:
                time.sleep(0.4)
            self.event(
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
            )
        self.event("content_block_stop", {"type": "content_block_stop", "index": 0})
        self.event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 15},
            },
        )
        self.event("message_stop", {"type": "message_stop"})
        self.finish_body()

    def scripted(self, model: str, reply: Reply) -> None:
        self.start(200, "text/event-stream")
        message = {
            "id": "msg_02",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": model,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 120, "output_tokens": 1},
        }
        self.event("message_start", {"type": "message_start", "message": message})
        index = 0
        if reply.text:
            self.event(
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            )
            for text in fragments(reply.text):
                self.event(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": text},
                    },
                )
            self.event("content_block_stop", {"type": "content_block_stop", "index": 0})
            index = 1
        self.event("ping", {"type": "ping"})
        for number, (name, arguments) in enumerate(reply.calls, start=index):
            block = {"type": "tool_use", "id": f"toolu_{number:02d}", "name": name, "input": {}}
            self.event(
                "content_block_start",
                {"type": "content_block_start", "index": number, "content_block": block},
            )
            for part in ["", *fragments(json.dumps(arguments))]:
                self.event(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": number,
                        "delta": {"type": "input_json_delta", "partial_json": part},
                    },
                )
            self.event("content_block_stop", {"type": "content_block_stop", "index": number})
        self.event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use" if reply.calls else "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 30},
            },
        )
        self.event("message_stop", {"type": "message_stop"})
        self.finish_body()


class OpenAIHandler(_Handler):
    def data(self, payload: dict[str, Any] | str) -> None:
        self.chunk(f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n")

    def piece(self, model: str, delta: dict[str, Any], finish: str | None = None) -> None:
        self.data(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "created": 1700000000,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
        )

    def answer(self, model: str, body: dict[str, Any]) -> None:
        if self.path != "/chat/completions":
            return self.json_error(404, {"error": {"message": "Not found", "type": "invalid_request_error"}})
        if model == "missing":
            message = f"The model `{model}` does not exist or you do not have access to it."
            return self.json_error(
                404,
                {"error": {"message": message, "type": "invalid_request_error", "code": "model_not_found"}},
            )
        if model == "bad-key":
            key = self.headers.get("authorization", "").removeprefix("Bearer ")
            message = f"Incorrect API key provided: {key}."
            return self.json_error(
                401,
                {"error": {"message": message, "type": "invalid_request_error", "code": "invalid_api_key"}},
            )
        if model == "no-tools" and body.get("tools"):
            return self.json_error(
                400,
                {
                    "error": {
                        "message": "tools is not supported by this model",
                        "type": "invalid_request_error",
                    }
                },
            )
        if model == "scripted":
            return self.scripted(model, self.server.seen.next_reply())
        if model == "slow":
            time.sleep(3)
        self.start(200, "text/event-stream")
        self.piece(model, {"role": "assistant", "content": ""})
        for number, text in enumerate(ANSWER_PIECES):
            if model == "drop" and number == 2:
                return self.cut()
            if model == "error-mid" and number == 1:
                self.data(
                    {
                        "error": {
                            "message": "The server had an error processing your request.",
                            "type": "server_error",
                        }
                    }
                )
                return self.finish_body()
            if model == "trickle" and number:
                time.sleep(0.4)
            self.piece(model, {"content": text})
        self.piece(model, {}, finish="stop")
        self.data("[DONE]")
        self.finish_body()

    def scripted(self, model: str, reply: Reply) -> None:
        self.start(200, "text/event-stream")
        self.piece(model, {"role": "assistant", "content": None})
        for text in fragments(reply.text) if reply.text else []:
            self.piece(model, {"content": text})
        for index, (name, arguments) in enumerate(reply.calls):
            head = {"index": index, "id": f"call_{index}", "type": "function"}
            self.piece(model, {"tool_calls": [{**head, "function": {"name": name, "arguments": ""}}]})
            for part in fragments(json.dumps(arguments)):
                self.piece(model, {"tool_calls": [{"index": index, "function": {"arguments": part}}]})
        self.piece(model, {}, finish="tool_calls" if reply.calls else "stop")
        self.data(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "created": 1700000000,
                "model": model,
                "choices": [],
                "usage": {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150},
            }
        )
        self.data("[DONE]")
        self.finish_body()


class RunningServer:
    def __init__(self, handler: type[_Handler]) -> None:
        self._server = _Server(("127.0.0.1", 0), handler)
        self.info = ProviderServer(url=f"http://127.0.0.1:{self._server.server_address[1]}")
        self._server.seen = self.info
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
