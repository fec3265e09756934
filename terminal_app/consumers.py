"""The terminal WebSocket: xterm.js in the page, an attach to the sandbox's PTY host, bytes between.

Thin by design: ``connect`` authenticates and loads the session through selectors,
``receive`` forwards keystrokes, a pump task forwards output, ``disconnect`` cancels the pump
and closes the attach. Blocking calls (Docker API, database) run in threads; the attach's socket
itself is read and written with the event loop's non-blocking socket calls.

Protocol and close codes: ``docs/terminal-protocol.md``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from core_app.errors import DomainError
from sessions_app import services
from sessions_app.models import Session
from terminal_app import limits
from terminal_app import services as terminals
from terminal_app.auth import handshake_check
from terminal_app.notify import terminal_group
from terminal_app.security import ws_refusal_record
from terminal_app.transport import SCOPE_KEY as WRITE_BUFFER

logger = logging.getLogger(__name__)

FRAME_MAX = 64 * 1024
READ_BYTES = 256 * 1024
# Output the client has not acknowledged yet; past this the pump stops reading the exec socket.
WINDOW_BYTES = 1024 * 1024
# Output daphne holds for a client that does not read (its TCP window is full); past this the
# pump stops reading the exec socket too, whatever the client acknowledges.
WRITE_BUFFER_BYTES = 1024 * 1024
WRITE_BUFFER_POLL_SECONDS = 0.005
ACTIVITY_EVERY_SECONDS = 30.0

CLOSE_NORMAL = 1000
CLOSE_TOO_MANY_TERMINALS = 4403
CLOSE_NOT_RUNNING = 4409
CLOSE_SESSION_STOPPED = 4410
CLOSE_FRAME_TOO_BIG = 4413
CLOSE_RATE_LIMITED = 4429
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


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that stands for no byte
        return text.encode("utf-8", "replace")


def _frame_too_big(text_data: str | None, bytes_data: bytes | None) -> bool:
    if bytes_data is not None:
        return len(bytes_data) > FRAME_MAX
    # A character is 1 to 4 bytes in UTF-8: encode only when the count alone does not decide.
    text = text_data or ""
    if len(text) > FRAME_MAX:
        return True
    return len(text) * 4 > FRAME_MAX and len(text.encode("utf-8", "surrogatepass")) > FRAME_MAX


class TerminalConsumer(AsyncWebsocketConsumer):
    terminal: terminals.OpenTerminal | None = None
    pump: asyncio.Task[None] | None = None
    heartbeat: asyncio.Task[None] | None = None
    group: str | None = None
    accepted = False

    # --- connect ------------------------------------------------------------------------------

    async def connect(self) -> None:
        params = {key: values[0] for key, values in parse_qs(self.scope["query_string"].decode()).items()}
        self.terminal_id = params.get("terminal_id", "main")
        public_id = params.get("session_id", "")
        bad_id = "" if terminals.TERMINAL_ID.match(self.terminal_id) else "bad terminal id"
        handshake = await handshake_check(scope=self.scope, params=params, bad_request=bad_id)
        if handshake.rate_limited:
            await self._rate_limited()
            return
        if handshake.user is None or handshake.session is None:
            await self._refuse(handshake.refusal, public_id)
            return
        user, self.session = handshake.user, handshake.session
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
        try:
            self.terminal = await sync_to_async(terminals.terminal_open, thread_sensitive=False)(
                session=self.session, user_id=user.pk, terminal_id=self.terminal_id, cols=cols, rows=rows
            )
        except DomainError as exc:
            code = CLOSE_TOO_MANY_TERMINALS if isinstance(exc, terminals.TooManyTerminals) else CLOSE_ERROR
            await self._close_with(exc.code, exc.detail, code)
            return
        self.sock = self.terminal.stream.sock
        self.sock.setblocking(False)
        self.sent = self.acked = 0
        self.window_open = asyncio.Event()
        self.window_open.set()
        self.last_activity = 0.0
        self.pump = asyncio.create_task(self._pump())
        self.heartbeat = asyncio.create_task(self._heartbeat())
        await self._status("connected", f"Attached to terminal {self.terminal_id}.")

    async def accept(self, subprotocol: str | None = None, headers: Any = None) -> None:
        await super().accept(subprotocol, headers)
        self.accepted = True

    async def _rate_limited(self) -> None:
        message = "Too many terminal connections; retry shortly."
        await self._close_with("rate_limited", message, CLOSE_RATE_LIMITED)

    async def _close_with(self, code: str, message: str, close_code: int) -> None:
        """Accept if not yet (so the client can read why), send an ``error`` message, close with
        ``close_code``."""
        if not self.accepted:
            await self.accept()
        await self.send(text_data=json.dumps({"type": "error", "code": code, "message": message}))
        await self.close(code=close_code)

    async def _heartbeat(self) -> None:
        while self.terminal is not None:
            await asyncio.sleep(limits.SLOT_HEARTBEAT_SECONDS)
            if self.terminal is not None:
                beat = sync_to_async(terminals.terminal_heartbeat, thread_sensitive=False)
                await beat(terminal=self.terminal)

    async def _refuse(self, reason: str, public_id: str) -> None:
        # Closing before accept refuses the handshake (HTTP 403); the reason stays in the log.
        logger.info("terminal refused for session %s: %s", public_id[:16], reason)
        await database_sync_to_async(ws_refusal_record)(scope=self.scope, reason=reason)
        await self.close()

    async def _status(self, status: str, message: str) -> None:
        await self.send(text_data=json.dumps({"type": "status", "status": status, "message": message}))

    # --- output -------------------------------------------------------------------------------

    async def _pump(self) -> None:
        terminal = self.terminal
        if terminal is None:
            return
        sock, stream = self.sock, terminal.stream
        loop = asyncio.get_running_loop()
        write_buffer = self.scope.get(WRITE_BUFFER)  # daphne's buffered bytes for this client
        ending: dict[str, Any] | None = None
        try:
            while True:
                await self.window_open.wait()
                # No buffer is held while the terminal is idle: sock_recv allocates once data is
                # there (64 KB pieces stay clear of the allocator's mmap threshold).
                try:
                    data = await loop.sock_recv(sock, FRAME_MAX)
                except OSError:
                    data = b""
                if not data:
                    break
                # Coalesce whatever else is already waiting, without waiting for more.
                pieces, size = [data], len(data)
                while size < READ_BYTES:
                    try:
                        more = sock.recv(min(FRAME_MAX, READ_BYTES - size))
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        more = b""
                    if not more:
                        break
                    pieces.append(more)
                    size += len(more)
                try:
                    output, events = stream.decode(b"".join(pieces))
                except ValueError as exc:  # the sandbox user can write anything there
                    logger.warning("terminal of session %s: %s", self.session.public_id, exc)
                    break
                # The attach ends right after an event; its last output may still be on the way.
                ending = ending or (events[0] if events else None)
                for start in range(0, len(output), FRAME_MAX):
                    # Acks say what the client processed, not that the bytes left this server: a
                    # client that acks without reading still stops the flow here.
                    while write_buffer is not None and write_buffer() > WRITE_BUFFER_BYTES:
                        await asyncio.sleep(WRITE_BUFFER_POLL_SECONDS)
                    chunk = output[start : start + FRAME_MAX]
                    await self.send(bytes_data=chunk)
                    self.sent += len(chunk)
                if self.sent - self.acked > WINDOW_BYTES:
                    self.window_open.clear()
        except asyncio.CancelledError:
            raise
        await self._ended(ending)

    async def _ended(self, ending: dict[str, Any] | None) -> None:
        """The attach ended: the shell exited, the terminal could not be opened, the PTY host
        dropped it (a viewer that took nothing for seconds, a host that died), or the session
        stopped under it."""
        session = await database_sync_to_async(Session.objects.filter(pk=self.session.pk).first)()
        if session is None or session.status != Session.Status.RUNNING:
            status = "deleted" if session is None else session.status
            await self._status(status, f"The session was {status}.")
            await self.close(code=CLOSE_SESSION_STOPPED)
            return
        kind = (ending or {}).get("type")
        if kind == "exit":
            code = _int((ending or {}).get("code"))
            await self.send(text_data=json.dumps({"type": "exit", "code": code}))
            await self.close(code=CLOSE_NORMAL)
        elif kind == "error":
            code = str((ending or {}).get("code") or "terminal_failed")
            close = CLOSE_TOO_MANY_TERMINALS if code == "too_many_terminals" else CLOSE_ERROR
            await self._close_with(code, str((ending or {}).get("detail") or "The terminal failed."), close)
        else:
            # The terminal itself goes on: the client reconnects and gets its replay.
            await self._close_with(
                "terminal_dropped", "The connection to the terminal dropped; reconnecting.", CLOSE_ERROR
            )

    # --- input --------------------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if _frame_too_big(text_data, bytes_data):
            await self._close_with(
                "frame_too_big",
                f"A message is at most {FRAME_MAX} bytes; send long input in pieces.",
                CLOSE_FRAME_TOO_BIG,
            )
            return
        if self.terminal is None:
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
            await self._input(_utf8(str(message.get("data", ""))))
        elif kind == "resize":
            cols, rows = _int(message.get("cols")), _int(message.get("rows"))
            if cols is None or rows is None:
                await self._bad_message("A resize needs whole numbers cols and rows.")
                return
            await self._write(terminals.terminal_resize_bytes(cols=cols, rows=rows))
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
            # The PTY host ends the shell; every attach to it then gets the exit.
            await self._write(terminals.terminal_close_bytes())
        else:
            await self._bad_message(f"Unknown type {kind!r}.")

    async def _bad_message(self, message: str) -> None:
        await self.send(text_data=json.dumps({"type": "error", "code": "bad_message", "message": message}))

    async def _write(self, data: bytes) -> bool:
        try:
            await asyncio.get_running_loop().sock_sendall(self.sock, data)
        except OSError:
            return False  # the pump sees the end and reports it
        return True

    async def _input(self, data: bytes) -> None:
        if not await self._write(terminals.terminal_input_bytes(data)):
            return
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
        for task in (self.pump, self.heartbeat):
            if task is not None:
                task.cancel()
        terminal, self.terminal = self.terminal, None
        if terminal is not None:
            # The attach sees its stdin end and exits; the terminal and its shell stay.
            await sync_to_async(terminals.terminal_detach, thread_sensitive=False)(terminal=terminal)
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)
