"""The terminal WebSocket: xterm.js in the page, a tmux client in the sandbox, bytes between.

Thin by design: ``connect`` authenticates and loads the session through selectors,
``receive`` forwards keystrokes, a pump task forwards output, ``disconnect`` cancels the pump
and closes the exec. Blocking calls (Docker API, database) run in threads; the TTY socket
itself is read and written with the event loop's non-blocking socket calls.

Protocol and close codes: ``docs/terminal-protocol.md``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from typing import Any
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from core_app.errors import DomainError
from core_app.metrics import OPEN_TERMINALS
from sessions_app import selectors, services
from sessions_app.errors import SessionNotFound
from sessions_app.models import Session
from sessions_app.runtime.base import Tty
from terminal_app import services as terminals
from terminal_app.auth import terminal_user
from terminal_app.notify import terminal_group
from terminal_app.security import ws_refusal_record

logger = logging.getLogger(__name__)

FRAME_MAX = 64 * 1024
# Output the client has not acknowledged yet; past this the pump stops reading the exec socket.
WINDOW_BYTES = 1024 * 1024
ACTIVITY_EVERY_SECONDS = 30.0

CLOSE_NORMAL = 1000
CLOSE_NOT_RUNNING = 4409
CLOSE_SESSION_STOPPED = 4410
CLOSE_ERROR = 4500


def _clamp(raw: str | None, low: int, high: int, default: int) -> int:
    try:
        return max(low, min(high, int(raw or default)))
    except ValueError:
        return default


def _int(raw: Any) -> int | None:
    """A JSON number (or numeric string) as an int; None for anything else, NaN and infinity too."""
    if isinstance(raw, bool):
        return None
    try:
        return int(raw)
    except (TypeError, ValueError, OverflowError):
        return None


class TerminalConsumer(AsyncWebsocketConsumer):
    tty: Tty | None = None
    pump: asyncio.Task[None] | None = None
    group: str | None = None

    # --- connect ------------------------------------------------------------------------------

    async def connect(self) -> None:
        params = {key: values[0] for key, values in parse_qs(self.scope["query_string"].decode()).items()}
        self.terminal_id = params.get("terminal_id", "main")
        public_id = params.get("session_id", "")
        user = await database_sync_to_async(terminal_user)(
            scope_user=self.scope.get("user"),
            token=params.get("token", ""),
            ticket=params.get("ticket", ""),
            session_public_id=public_id,
        )
        if user is None or not terminals.TERMINAL_ID.match(self.terminal_id):
            await self._refuse("no valid credential" if user is None else "bad terminal id", public_id)
            return
        try:
            self.session: Session = await database_sync_to_async(selectors.session_get)(
                user=user, public_id=public_id
            )
        except SessionNotFound:
            await self._refuse("unknown session or not the owner's", public_id)
            return
        await self.accept()
        if self.session.status != Session.Status.RUNNING:
            await self._status(
                self.session.status, f"The session is {self.session.status}. Resume it to use the terminal."
            )
            await self.close(code=CLOSE_NOT_RUNNING)
            return
        self.group = terminal_group(self.session.public_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        cols, rows = _clamp(params.get("cols"), 2, 1000, 80), _clamp(params.get("rows"), 2, 500, 24)
        self.client_id = secrets.token_hex(8)
        try:
            self.tty = await sync_to_async(services.session_open_tty, thread_sensitive=False)(
                session=self.session,
                argv=terminals.tmux_attach_argv(
                    self.terminal_id, cols=cols, rows=rows, client_id=self.client_id
                ),
                cols=cols,
                rows=rows,
            )
        except DomainError as exc:
            await self.send(text_data=json.dumps({"type": "error", "code": exc.code, "message": exc.detail}))
            await self.close(code=CLOSE_ERROR)
            return
        OPEN_TERMINALS.inc()
        self.tty.sock.setblocking(False)
        self.sent = self.acked = 0
        self.window_open = asyncio.Event()
        self.window_open.set()
        self.last_activity = 0.0
        self.pump = asyncio.create_task(self._pump())
        await self._status("connected", f"Attached to terminal {self.terminal_id}.")

    async def _refuse(self, reason: str, public_id: str) -> None:
        # Closing before accept refuses the handshake (HTTP 403); the reason stays in the log.
        logger.info("terminal refused for session %s: %s", public_id[:16], reason)
        await database_sync_to_async(ws_refusal_record)(scope=self.scope, reason=reason)
        await self.close()

    async def _status(self, status: str, message: str) -> None:
        await self.send(text_data=json.dumps({"type": "status", "status": status, "message": message}))

    # --- output -------------------------------------------------------------------------------

    async def _pump(self) -> None:
        assert self.tty is not None
        sock = self.tty.sock
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self.window_open.wait()
                try:
                    data = await loop.sock_recv(sock, FRAME_MAX)
                except OSError:
                    data = b""
                if not data:
                    break
                # Coalesce whatever else is already waiting, without waiting for more.
                while len(data) < FRAME_MAX:
                    try:
                        more = sock.recv(FRAME_MAX - len(data))
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        more = b""
                    if not more:
                        break
                    data += more
                await self.send(bytes_data=data)
                self.sent += len(data)
                if self.sent - self.acked > WINDOW_BYTES:
                    self.window_open.clear()
        except asyncio.CancelledError:
            raise
        await self._ended()

    async def _ended(self) -> None:
        """The tmux client exited: the shell ended, or the session stopped under it."""
        session = await database_sync_to_async(Session.objects.filter(pk=self.session.pk).first)()
        if session is None or session.status != Session.Status.RUNNING:
            status = "deleted" if session is None else session.status
            await self._status(status, f"The session was {status}.")
            await self.close(code=CLOSE_SESSION_STOPPED)
            return
        code = await sync_to_async(self.tty.exit_code, thread_sensitive=False)() if self.tty else None
        await self.send(text_data=json.dumps({"type": "exit", "code": code}))
        await self.close(code=CLOSE_NORMAL)

    # --- input --------------------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.tty is None:
            return
        if bytes_data is not None:
            await self._input(bytes_data)
            return
        try:
            message: dict[str, Any] = json.loads(text_data or "")
            kind = message.get("type")
        except (ValueError, AttributeError):
            await self._bad_message("Send JSON.")
            return
        if kind == "input":
            await self._input(str(message.get("data", "")).encode("utf-8", "surrogateescape"))
        elif kind == "resize":
            cols, rows = _int(message.get("cols")), _int(message.get("rows"))
            if cols is None or rows is None:
                await self._bad_message("A resize needs whole numbers cols and rows.")
                return
            cols, rows = max(2, min(1000, cols)), max(2, min(500, rows))
            await sync_to_async(self.tty.resize, thread_sensitive=False)(cols=cols, rows=rows)
        elif kind == "ack":
            acked = _int(message.get("bytes", 0))
            if acked is None:
                await self._bad_message("An ack needs a whole number of bytes.")
                return
            # Never more than was sent: a client cannot open the window for good.
            self.acked = min(self.sent, max(self.acked, acked))
            if self.sent - self.acked <= WINDOW_BYTES:
                self.window_open.set()
        elif kind == "ping":
            await self.send(text_data=json.dumps({"type": "pong", "t": message.get("t")}))
        elif kind == "close":
            # Off the shared sync thread: a slow exec must not hold up other consumers' queries.
            try:
                await sync_to_async(terminals.terminal_close, thread_sensitive=False)(
                    session=self.session, terminal_id=self.terminal_id
                )
            except DomainError as exc:
                await self.send(
                    text_data=json.dumps({"type": "error", "code": exc.code, "message": exc.detail})
                )
        else:
            await self._bad_message(f"Unknown type {kind!r}.")

    async def _bad_message(self, message: str) -> None:
        await self.send(text_data=json.dumps({"type": "error", "code": "bad_message", "message": message}))

    async def _input(self, data: bytes) -> None:
        assert self.tty is not None
        try:
            await asyncio.get_running_loop().sock_sendall(self.tty.sock, data)
        except OSError:
            return  # the pump sees the end and reports it
        now = time.monotonic()
        if now - self.last_activity > ACTIVITY_EVERY_SECONDS:
            self.last_activity = now
            await database_sync_to_async(services.session_touch)(session=self.session)

    # --- the session stopped (from any process, through the channel layer) ----------------------

    async def session_stopped(self, event: dict[str, Any]) -> None:
        status = event.get("status", "suspended")
        await self._status(status, f"The session was {status}.")
        await self.close(code=CLOSE_SESSION_STOPPED)

    # --- disconnect ---------------------------------------------------------------------------

    async def disconnect(self, code: int) -> None:
        if self.pump is not None:
            self.pump.cancel()
        if self.tty is not None:
            OPEN_TERMINALS.dec()
            self.tty.close()
            self.tty = None
            # Closing the socket does not end a TTY exec; hang the tmux client up explicitly. Its
            # exec ends, the tmux session (the shell and what it runs) stays.
            try:
                await sync_to_async(terminals.terminal_detach, thread_sensitive=False)(
                    session=self.session, client_id=self.client_id
                )
            except DomainError as exc:  # the session stopped: its clients are gone already
                logger.debug("session %s: no tmux client to hang up (%s)", self.session.public_id, exc.code)
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)
