"""The language server WebSocket: Monaco's LSP client in the page, a language server in the
sandbox, one JSON-RPC message per text frame between (``docs/lsp-protocol.md``).

Thin like the terminal's: ``connect`` authenticates exactly as a terminal does (the cookie with
an allowed Origin, a JWT or a ticket; the same handshake rate limits) and opens the bridge
through the service; a pump task forwards the server's messages; ``receive`` forwards the
client's. The bridge ends when the server exits, is replaced by another tab's, breaks the
protocol or stops reading; the close code tells the client whether to reconnect.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from core_app.errors import DomainError
from lsp_app import services as bridges
from lsp_app.servers import language_server_get
from sessions_app import services as sessions
from sessions_app.models import Session
from terminal_app.auth import handshake_check
from terminal_app.notify import terminal_group
from terminal_app.security import ws_refusal_record
from terminal_app.transport import SCOPE_KEY as WRITE_BUFFER

logger = logging.getLogger(__name__)

# Output daphne holds for a client that does not read; past this the pump waits.
WRITE_BUFFER_BYTES = 1024 * 1024
WRITE_BUFFER_POLL_SECONDS = 0.005
ACTIVITY_EVERY_SECONDS = 30.0
IDLE_CHECK_SECONDS = 30.0

CLOSE_REPLACED = 4001
CLOSE_BAD_MESSAGE = 4400
CLOSE_IDLE = 4408
CLOSE_NOT_RUNNING = 4409
CLOSE_SESSION_STOPPED = 4410
CLOSE_FRAME_TOO_BIG = 4413
CLOSE_RATE_LIMITED = 4429
CLOSE_ERROR = 4500
CLOSE_SERVER_ENDED = 4502


class LanguageServerConsumer(AsyncWebsocketConsumer):
    bridge: bridges.LanguageServerBridge | None = None
    pump: asyncio.Task[None] | None = None
    idle_watch: asyncio.Task[None] | None = None
    group: str | None = None
    accepted = False

    # --- connect ------------------------------------------------------------------------------

    async def connect(self) -> None:
        params = {key: values[0] for key, values in parse_qs(self.scope["query_string"].decode()).items()}
        public_id = params.get("session_id", "")
        server = language_server_get(params.get("language", ""))
        bad_language = "" if server is not None else "unknown language"
        handshake = await handshake_check(scope=self.scope, params=params, bad_request=bad_language)
        if handshake.rate_limited:
            await self._close_with("rate_limited", "Too many connections; retry shortly.", CLOSE_RATE_LIMITED)
            return
        if handshake.session is None or server is None:
            await self._refuse(handshake.refusal, public_id)
            return
        self.session: Session = handshake.session
        await self.accept()
        if self.session.status != Session.Status.RUNNING:
            message = f"The session is {self.session.status}. Resume it for language features."
            await self._close_with("not_running", message, CLOSE_NOT_RUNNING)
            return
        self.group = terminal_group(self.session.public_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self._control("starting")
        try:
            self.bridge = await bridges.language_server_open(session=self.session, server=server)
        except DomainError as exc:
            await self._close_with(exc.code, exc.detail, CLOSE_ERROR)
            return
        self.last_message = self.last_touch = time.monotonic()
        self.pump = asyncio.create_task(self._pump())
        self.idle_watch = asyncio.create_task(self._idle_watch())
        await self._control("ready")

    async def accept(self, subprotocol: str | None = None, headers: Any = None) -> None:
        await super().accept(subprotocol, headers)
        self.accepted = True

    async def _refuse(self, reason: str, public_id: str) -> None:
        logger.info("language server refused for session %s: %s", public_id[:16], reason)
        await database_sync_to_async(ws_refusal_record)(scope=self.scope, reason=reason)
        await self.close()

    async def _control(self, state: str, **fields: Any) -> None:
        await self.send(text_data=json.dumps({"vibecode": state, **fields}))

    async def _close_with(self, code: str, message: str, close_code: int) -> None:
        """Say why, close, and stop the server now (not when the client's close comes back)."""
        if not self.accepted:
            await self.accept()
        await self._control("error", code=code, message=message)
        await self.close(code=close_code)
        self._release()

    # --- the server's messages ----------------------------------------------------------------

    async def _pump(self) -> None:
        bridge = self.bridge
        assert bridge is not None
        write_buffer = self.scope.get(WRITE_BUFFER)  # daphne's buffered bytes for this client
        while True:
            event = await bridge.next_event()
            if isinstance(event, bridges.Ended):
                await self._server_ended(event)
                return
            while write_buffer is not None and write_buffer() > WRITE_BUFFER_BYTES:
                await asyncio.sleep(WRITE_BUFFER_POLL_SECONDS)
            await self.send(text_data=event)
            bridge.release(len(event))

    async def _server_ended(self, ended: bridges.Ended) -> None:
        if ended.reason == "replaced":
            message = "Another tab of this workspace started this language's server."
            await self._close_with("replaced", message, CLOSE_REPLACED)
            return
        session = await database_sync_to_async(Session.objects.filter(pk=self.session.pk).first)()
        if session is None or session.status != Session.Status.RUNNING:
            status = "deleted" if session is None else session.status
            await self._close_with("session_stopped", f"The session was {status}.", CLOSE_SESSION_STOPPED)
            return
        messages = {
            "exited": "The language server exited; it restarts by itself.",
            "broken": "The language server broke the protocol; it restarts by itself.",
            "stalled": "The language server stopped reading; it restarts by itself.",
            "closed": "The language server's connection ended; it restarts by itself.",
        }
        code = f"server_{ended.reason}"
        await self._close_with(
            code, messages.get(ended.reason, "The language server ended."), CLOSE_SERVER_ENDED
        )

    # --- the client's messages ----------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            await self._close_with("bad_message", "Send JSON-RPC messages as text frames.", CLOSE_BAD_MESSAGE)
            return
        cap = settings.VIBECODE_LSP_MAX_MESSAGE_BYTES
        if len(text_data) > cap or len(text_data.encode("utf-8", "surrogatepass")) > cap:
            await self._close_with("frame_too_big", f"A message is at most {cap} bytes.", CLOSE_FRAME_TOO_BIG)
            return
        try:
            message = json.loads(text_data)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            await self._close_with("bad_message", "Each frame is one JSON-RPC message.", CLOSE_BAD_MESSAGE)
            return
        bridge = self.bridge
        if bridge is None:
            return
        if not bridge.send(text_data):
            bridge.close()  # the pump reports it: the server is not reading
            await self._close_with(
                "server_stalled",
                "The language server stopped reading; it restarts by itself.",
                CLOSE_SERVER_ENDED,
            )
            return
        now = time.monotonic()
        self.last_message = now
        if now - self.last_touch > ACTIVITY_EVERY_SECONDS:
            self.last_touch = now
            await database_sync_to_async(sessions.session_touch)(session=self.session)

    async def _idle_watch(self) -> None:
        idle = settings.VIBECODE_LSP_IDLE_SECONDS
        while True:
            await asyncio.sleep(min(IDLE_CHECK_SECONDS, idle))
            if time.monotonic() - self.last_message >= idle:
                await self._close_with(
                    "idle", f"No requests for {idle} s: the language server was stopped.", CLOSE_IDLE
                )
                return

    # --- the session stopped (from any process, through the channel layer) ----------------------

    async def session_stopped(self, event: dict[str, Any]) -> None:
        status = event.get("status", "suspended")
        await self._close_with("session_stopped", f"The session was {status}.", CLOSE_SESSION_STOPPED)

    # --- disconnect ---------------------------------------------------------------------------

    async def disconnect(self, code: int) -> None:
        self._release()
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    def _release(self) -> None:
        """Stop the tasks and close the bridge (the supervisor then kills the server). Idempotent."""
        for task in (self.pump, self.idle_watch):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        bridge, self.bridge = self.bridge, None
        if bridge is not None:
            bridge.close()
