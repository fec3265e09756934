"""The preview proxy: each sandbox port on an origin of its own, carried through the Docker API.

``PreviewRouter`` wraps the whole ASGI application. A request whose Host is a preview host
(``<port>-<session>.<VIBECODE_PREVIEW_DOMAIN>``) never reaches Django's URLs, views, middleware
or cookies: it is authorized (:func:`preview_app.services.authorize_preview`) and then carried to
``127.0.0.1:<port>`` inside the sandbox over the session's tunnel (``sessions_app.runtime.tunnel``)
as HTTP/1.1 (h11) or a WebSocket (wsproto). Every other request goes to the application.

What it guarantees:

* the owner's preview cookie and VibeCode's own cookies are stripped before the request reaches
  the user's program, and a response can't set the preview cookie;
* responses stream both ways with bounded memory (the tunnel's windows; daphne's backpressure in
  ``core_app.backpressure``), so server-sent events and large downloads work;
* failures answer a small page, never a 500: nothing listening is a 502, a stopped workspace a
  503, too many connections a 503, a body over the cap a 413, a program that hangs up a 502;
* WebSocket close codes the browser can't be sent (1005, 1006, 1015, 1009...) are mapped into
  the 4000 range that daphne accepts.
"""

from __future__ import annotations

import asyncio
import collections
import html
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

import h11
from asgiref.sync import sync_to_async
from django.conf import settings
from wsproto import ConnectionType, WSConnection
from wsproto import events as ws

from core_app.metrics import PREVIEW_REQUESTS
from preview_app import services
from sessions_app.errors import SandboxNotRunning
from sessions_app.models import Session
from sessions_app.runtime.tunnel import Channel, ChannelClosed, ChannelRefused, Tunnel
from sessions_app.services import session_tunnel

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

READ_BYTES = 256 * 1024
# Request and response headers that describe one hop, not the message (RFC 9110, 7.6.1).
HOP_BY_HOP = {
    b"connection",
    b"keep-alive",
    b"proxy-authenticate",
    b"proxy-authorization",
    b"proxy-connection",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
}
# VibeCode's own cookies: never forwarded to a user's program, whatever their domain.
APP_COOKIES = {"sessionid", "csrftoken"}


def _close_code(code: int | None) -> int:
    """A close code daphne can send to the browser: 1000, or 3000-4999; others move to 4000 +
    their last three digits (1009 message too big becomes 4009)."""
    if code is None or code == 1000:
        return 1000
    if 3000 <= code <= 4999:
        return code
    return 4000 + code % 1000


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return ""


class ConnectionSlots:
    """Open preview connections per workspace in this process; past the cap, 503."""

    def __init__(self) -> None:
        self._counts: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def take(self, key: str) -> bool:
        with self._lock:
            if self._counts[key] >= int(settings.VIBECODE_PREVIEW_MAX_CONNECTIONS):
                return False
            self._counts[key] += 1
            return True

    def give(self, key: str) -> None:
        with self._lock:
            self._counts[key] -= 1
            if self._counts[key] <= 0:
                del self._counts[key]


SLOTS = ConnectionSlots()


@dataclass(frozen=True)
class Admission:
    """The decision on a request, and the session's tunnel when it may go through. ``error`` says
    why an allowed request has no tunnel: ``stopped`` or ``unavailable``."""

    decision: services.PreviewDecision
    tunnel: Tunnel | None = None
    error: str = ""


AdmissionKey = tuple[str, int, str]  # session public id, port, preview cookie


class Admissions:
    """Requests let in, with their tunnel, remembered for ``GRANT_SECONDS`` per (session, port,
    cookie) in this process: the dozens of requests of one page load cost one database round and
    no thread hop. So a port made private, or a workspace stopped, takes up to that long to
    refuse requests already admitted in a process."""

    GRANT_SECONDS = 2.0
    MAX_ENTRIES = 4096

    def __init__(self) -> None:
        self._granted: dict[AdmissionKey, tuple[float, Admission]] = {}
        self._lock = threading.Lock()

    def cached(self, key: AdmissionKey) -> Admission | None:
        entry = self._granted.get(key)
        if entry is None or entry[0] < time.monotonic():
            return None
        admission = entry[1]
        return admission if admission.tunnel is not None and admission.tunnel.alive else None

    def forget(self, key: AdmissionKey) -> None:
        with self._lock:
            self._granted.pop(key, None)

    def admit(self, key: AdmissionKey, path: str) -> Admission:
        """Decide (blocking: the database, and an engine call to start a tunnel)."""
        public_id, port, cookie = key
        decision = services.authorize_preview(public_id, port, cookie or None, path)
        if not decision.allowed:
            return Admission(decision)
        if decision.session_status != "running" or decision.session_id is None:
            return Admission(decision, error="stopped")
        try:
            tunnel = session_tunnel(session=Session.objects.get(pk=decision.session_id))
        except (SandboxNotRunning, Session.DoesNotExist):
            return Admission(decision, error="stopped")
        except Exception as exc:
            logger.info("preview %s:%s: no tunnel (%s)", public_id, port, exc)
            return Admission(decision, error="unavailable")
        admission = Admission(decision, tunnel)
        now = time.monotonic()
        with self._lock:
            if len(self._granted) >= self.MAX_ENTRIES:
                self._granted = {k: v for k, v in self._granted.items() if v[0] > now}
            self._granted[key] = (now + self.GRANT_SECONDS, admission)
        return admission


ADMISSIONS = Admissions()


class PreviewRouter:
    """ASGI middleware: preview hosts to the sandbox, everything else to ``app``."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in {"http", "websocket"}:
            parsed = services.parse_preview_host(_header(scope, b"host"))
            if parsed is not None:
                port, public_id = parsed
                await Preview(scope, receive, send, port=port, public_id=public_id).serve()
                return
        await self.app(scope, receive, send)


class Preview:
    """One request or WebSocket for a preview origin."""

    def __init__(self, scope: Scope, receive: Receive, send: Send, *, port: int, public_id: str) -> None:
        self.scope, self.receive, self.send = scope, receive, send
        self.port, self.public_id = port, public_id
        self.kind = scope["type"]
        self.cookies = SimpleCookie()
        try:
            self.cookies.load(_header(scope, b"cookie"))
        except Exception:  # a malformed Cookie header: as if there were none
            self.cookies = SimpleCookie()

    # --- entry --------------------------------------------------------------------------------

    async def serve(self) -> None:
        if self.kind == "http" and self.scope.get("path") == services.HANDOFF_PATH:
            await self._handoff()
            return
        cookie = self.cookies.get(services.PREVIEW_COOKIE)
        key = (self.public_id, self.port, cookie.value if cookie else "")
        admission = ADMISSIONS.cached(key)
        if admission is None:
            admission = await sync_to_async(ADMISSIONS.admit, thread_sensitive=False)(
                key, self._target().decode("latin-1")
            )
        decision = admission.decision
        if not decision.allowed:
            PREVIEW_REQUESTS.labels(kind=self.kind, outcome=f"refused_{decision.status}").inc()
            if decision.redirect_url:
                await self._page(302, "Redirecting...", "", location=decision.redirect_url)
            else:
                await self._page(
                    decision.status,
                    "Not found" if decision.status == 404 else "Forbidden",
                    "There is no preview here, or it is private to its owner.",
                )
            return
        if admission.tunnel is None:
            stopped = admission.error == "stopped"
            PREVIEW_REQUESTS.labels(kind=self.kind, outcome="stopped" if stopped else "unavailable").inc()
            if stopped:
                await self._page(503, "Workspace stopped", "This workspace is not running. Resume it first.")
            else:
                await self._page(503, "Preview unavailable", "The workspace did not answer. Try again.")
            return
        if not SLOTS.take(self.public_id):
            PREVIEW_REQUESTS.labels(kind=self.kind, outcome="busy").inc()
            await self._page(503, "Too many connections", "This workspace has too many preview connections.")
            return
        try:
            channel = await admission.tunnel.aopen(self.port)
            try:
                if self.kind == "http":
                    await self._http(channel)
                else:
                    await self._websocket(channel)
            finally:
                channel.close()
        except ChannelClosed:  # the tunnel died between the admission and the open
            ADMISSIONS.forget(key)
            await self._page(503, "Preview unavailable", "The workspace did not answer. Try again.")
        finally:
            SLOTS.give(self.public_id)

    # --- the hand-off: the owner arrives with a one-time token and leaves with a cookie ----------

    async def _handoff(self) -> None:
        query = parse_qs(bytes(self.scope.get("query_string") or b"").decode("latin-1"))
        token = (query.get("token") or [""])[0]
        target = (query.get("next") or ["/"])[0]
        if not target.startswith("/") or target.startswith("//") or "\\" in target:
            target = "/"
        value = await sync_to_async(services.redeem_handoff, thread_sensitive=False)(
            self.public_id, self.port, token
        )
        if value is None:
            PREVIEW_REQUESTS.labels(kind="http", outcome="handoff_refused").inc()
            await self._page(403, "Link expired", "This link was used or has expired. Open it again.")
            return
        cookie = services.preview_cookie_header(value)
        PREVIEW_REQUESTS.labels(kind="http", outcome="handoff").inc()
        await self._page(302, "Redirecting...", "", location=target, cookie=cookie)

    # --- HTTP ---------------------------------------------------------------------------------

    def _request_headers(self) -> list[tuple[bytes, bytes]]:
        headers: list[tuple[bytes, bytes]] = []
        for key, value in self.scope.get("headers") or ():
            name = bytes(key).lower()
            if name in HOP_BY_HOP or (name == b"content-length" and self.kind == "websocket"):
                continue
            if name == b"cookie":
                kept = [
                    f"{morsel.key}={morsel.coded_value}"
                    for morsel in self.cookies.values()
                    if morsel.key != services.PREVIEW_COOKIE and morsel.key not in APP_COOKIES
                ]
                if kept:
                    headers.append((b"cookie", "; ".join(kept).encode("latin-1")))
                continue
            if self.kind == "websocket" and name.startswith(b"sec-websocket-"):
                continue  # wsproto makes its own handshake
            headers.append((name, bytes(value)))
        client = self.scope.get("client") or ("", 0)
        headers.append((b"x-forwarded-for", str(client[0]).encode()))
        headers.append((b"x-forwarded-proto", settings.VIBECODE_PREVIEW_SCHEME.encode()))
        headers.append((b"x-forwarded-host", _header(self.scope, b"host").encode("latin-1")))
        return headers

    def _target(self) -> bytes:
        path = self.scope.get("raw_path") or self.scope.get("path", "/").encode()
        query = self.scope.get("query_string") or b""
        return bytes(path) + (b"?" + bytes(query) if query else b"")

    async def _http(self, channel: Channel) -> None:
        upstream = h11.Connection(h11.CLIENT)
        headers = [(k, v) for k, v in self._request_headers() if k != b"content-length"]
        length = _header(self.scope, b"content-length")
        limit = int(settings.VIBECODE_PREVIEW_MAX_BODY_MB) * 1024 * 1024
        if length.isdigit() and int(length) > limit:
            await self._too_large()
            return
        if length.isdigit():
            headers.append((b"content-length", length.encode()))
        elif "chunked" in _header(self.scope, b"transfer-encoding").lower():
            headers.append((b"transfer-encoding", b"chunked"))
        # else: no body, and no framing header (h11 then sends none).
        headers.append((b"connection", b"close"))
        method = self.scope.get("method", "GET").encode()
        started = False
        disconnected = asyncio.Event()
        try:
            # The head, and a small body that came whole, leave in one write (one tunnel frame).
            pending = upstream.send(h11.Request(method=method, target=self._target(), headers=headers))
            sent = 0
            while True:
                message = await self.receive()
                if message["type"] == "http.disconnect":
                    return
                body = message.get("body", b"")
                sent += len(body)
                if sent > limit:
                    await self._too_large()
                    return
                if body:
                    pending += upstream.send(h11.Data(data=body))
                if not message.get("more_body"):
                    break
                await channel.asend(pending)
                pending = b""
            await channel.asend(pending + upstream.send(h11.EndOfMessage()))
            watcher = asyncio.ensure_future(self._watch_disconnect(disconnected, channel))
            try:
                started = await self._relay_response(upstream, channel)
            finally:
                watcher.cancel()
            PREVIEW_REQUESTS.labels(kind="http", outcome="ok").inc()
        except ChannelRefused:
            PREVIEW_REQUESTS.labels(kind="http", outcome="not_listening").inc()
            await self._page(
                502,
                "Nothing listening",
                f"Nothing is listening on port {self.port} in the workspace. Start your server and reload.",
            )
        except (ChannelClosed, h11.ProtocolError, TimeoutError) as exc:
            if disconnected.is_set():
                return
            PREVIEW_REQUESTS.labels(kind="http", outcome="bad_gateway").inc()
            logger.info("preview %s:%s: %s", self.public_id, self.port, exc)
            if started:
                await self.send({"type": "http.response.body", "body": b"", "more_body": False})
            else:
                await self._page(502, "Bad gateway", f"The program on port {self.port} hung up.")

    async def _watch_disconnect(self, disconnected: asyncio.Event, channel: Channel) -> None:
        """The browser went away (an SSE tab closed): stop reading from the sandbox."""
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                disconnected.set()
                channel.close()
                return

    async def _relay_response(self, upstream: h11.Connection, channel: Channel) -> bool:
        """Stream the program's response to the browser. True once its head was sent."""
        started = False
        idle = float(settings.VIBECODE_PREVIEW_IDLE_SECONDS)
        while True:
            event = upstream.next_event()
            if event is h11.NEED_DATA:
                data = await asyncio.wait_for(channel.arecv(READ_BYTES), idle)
                upstream.receive_data(data)
                continue
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                ours = services.PREVIEW_COOKIE.encode()
                headers = [
                    (k.lower(), v)
                    for k, v in event.headers
                    if k.lower() not in HOP_BY_HOP
                    and not (k.lower() == b"set-cookie" and v.split(b"=", 1)[0].strip() == ours)
                ]
                start = {"type": "http.response.start", "status": event.status_code, "headers": headers}
                await self.send(start)
                started = True
            elif isinstance(event, h11.Data):
                await self.send({"type": "http.response.body", "body": bytes(event.data), "more_body": True})
            elif isinstance(event, h11.EndOfMessage):
                await self.send({"type": "http.response.body", "body": b"", "more_body": False})
                return started
            elif event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
                raise ChannelClosed("the program closed the connection early")

    # --- WebSocket ----------------------------------------------------------------------------

    async def _websocket(self, channel: Channel) -> None:
        message = await self.receive()
        if message["type"] != "websocket.connect":
            return
        upstream = WSConnection(ConnectionType.CLIENT)
        offered = _header(self.scope, b"sec-websocket-protocol").split(",")
        protocols = [p.strip() for p in offered if p.strip()]
        extra = [(k, v) for k, v in self._request_headers() if k not in {b"host", b"origin"}]
        origin = _header(self.scope, b"origin")
        if origin:
            extra.append((b"origin", origin.encode("latin-1")))
        try:
            await channel.asend(
                upstream.send(
                    ws.Request(
                        host=_header(self.scope, b"host"),
                        target=self._target().decode("latin-1"),
                        subprotocols=protocols,
                        extra_headers=extra,
                    )
                )
            )
            accepted = await self._ws_handshake(upstream, channel)
        except (ChannelRefused, ChannelClosed, TimeoutError) as exc:
            logger.info("preview %s:%s websocket refused: %s", self.public_id, self.port, exc)
            PREVIEW_REQUESTS.labels(kind="websocket", outcome="not_listening").inc()
            await self.send({"type": "websocket.close", "code": 4502})
            return
        if accepted is None:
            PREVIEW_REQUESTS.labels(kind="websocket", outcome="rejected").inc()
            await self.send({"type": "websocket.close", "code": 4403})
            return
        await self.send({"type": "websocket.accept", "subprotocol": accepted.subprotocol})
        PREVIEW_REQUESTS.labels(kind="websocket", outcome="ok").inc()
        browser = asyncio.ensure_future(self._ws_from_browser(upstream, channel))
        program = asyncio.ensure_future(self._ws_from_program(upstream, channel))
        done, pending = await asyncio.wait({browser, program}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        for task in done:
            error = task.exception()
            if error is not None and not isinstance(error, (ChannelClosed, TimeoutError)):
                logger.info("preview %s:%s websocket ended: %r", self.public_id, self.port, error)

    async def _ws_handshake(self, upstream: WSConnection, channel: Channel) -> ws.AcceptConnection | None:
        while True:
            data = await asyncio.wait_for(channel.arecv(READ_BYTES), 30)
            if not data:
                return None
            upstream.receive_data(data)
            for event in upstream.events():
                if isinstance(event, ws.AcceptConnection):
                    return event
                if isinstance(event, ws.RejectConnection):
                    return None

    async def _ws_from_browser(self, upstream: WSConnection, channel: Channel) -> None:
        while True:
            message = await self.receive()
            if message["type"] == "websocket.disconnect":
                code = int(message.get("code") or 1000)
                try:
                    await channel.asend(upstream.send(ws.CloseConnection(code=code if code < 5000 else 1000)))
                except Exception:  # noqa: S110 (the program may be gone already)
                    pass
                return
            if message.get("text") is not None:
                await channel.asend(upstream.send(ws.TextMessage(data=message["text"])))
            elif message.get("bytes") is not None:
                await channel.asend(upstream.send(ws.BytesMessage(data=message["bytes"])))

    async def _ws_from_program(self, upstream: WSConnection, channel: Channel) -> None:
        text: list[str] = []
        binary: list[bytes] = []
        idle = float(settings.VIBECODE_PREVIEW_IDLE_SECONDS)
        while True:
            data = await asyncio.wait_for(channel.arecv(READ_BYTES), idle)
            if not data:
                await self.send({"type": "websocket.close", "code": 1000})
                return
            upstream.receive_data(data)
            for event in upstream.events():
                if isinstance(event, ws.TextMessage):
                    text.append(event.data)
                    if event.message_finished:
                        await self.send({"type": "websocket.send", "text": "".join(text)})
                        text.clear()
                elif isinstance(event, ws.BytesMessage):
                    binary.append(bytes(event.data))
                    if event.message_finished:
                        await self.send({"type": "websocket.send", "bytes": b"".join(binary)})
                        binary.clear()
                elif isinstance(event, ws.Ping):
                    await channel.asend(upstream.send(event.response()))
                elif isinstance(event, ws.CloseConnection):
                    try:
                        await channel.asend(upstream.send(event.response()))
                    except Exception:  # noqa: S110
                        pass
                    await self.send({"type": "websocket.close", "code": _close_code(event.code)})
                    return

    async def _too_large(self) -> None:
        limit = settings.VIBECODE_PREVIEW_MAX_BODY_MB
        await self._page(413, "Too large", f"Request bodies are limited to {limit} MB.")

    # --- small pages --------------------------------------------------------------------------

    async def _page(
        self, status: int, title: str, text: str, *, location: str = "", cookie: str = ""
    ) -> None:
        if self.kind == "websocket":
            # Before the handshake: refuse it (daphne answers 403 to the browser).
            await self.send({"type": "websocket.close", "code": 4000 + status})
            return
        title, text = html.escape(title), html.escape(text)
        body = (
            f"<!doctype html><meta charset=utf-8><title>{title}</title>"
            f"<body style='font:15px system-ui;margin:3em'><h1>{title}</h1><p>{text}</p>"
        ).encode()
        headers = [
            (b"content-type", b"text/html; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
            (b"x-vibecode-preview", str(status).encode()),
        ]
        if location:
            headers.append((b"location", location.encode("latin-1")))
        if cookie:
            headers.append((b"set-cookie", cookie.encode("latin-1")))
        await self.send({"type": "http.response.start", "status": status, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})
