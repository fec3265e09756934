"""A language server in a session's sandbox, bridged to one WebSocket.

:func:`language_server_open` starts the server under the sandbox's ``lsp`` supervisor (through
the runtime: the Docker API is the one door) and returns a :class:`LanguageServerBridge`. The
bridge has two threads: a reader that takes LSP frames off the exec stream, bounded
(``lsp_app.framing``), and hands them to the event loop; and a writer that frames the client's
messages onto the server's stdin. Both sides are bounded in bytes, so neither a server that
floods nor one that stops reading grows the backend's memory: the reader stops reading while the
client has not taken what it holds, and a client whose server does not read is told so.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
import time
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings

from core_app.metrics import LANGUAGE_SERVER_ENDS, OPEN_LANGUAGE_SERVERS
from lsp_app.framing import FrameError, FrameReader, frame
from lsp_app.servers import LanguageServer
from sessions_app.models import Session
from sessions_app.runtime import get_runtime
from sessions_app.runtime.errors import SandboxNotRunning
from sessions_app.runtime.helper import ProcessStream
from sessions_app.specs import session_ref

logger = logging.getLogger(__name__)

# Bytes of the server's messages held for the client before the reader stops reading.
READ_BUDGET_BYTES = 2 * 1024 * 1024
# Bytes of the client's messages queued for a server before the client is told it does not read.
WRITE_BUDGET_BYTES = 4 * 1024 * 1024
# A server that takes none of a message's bytes for this long is not reading: the bridge ends.
WRITE_STALL_SECONDS = 10.0

# The supervisor's own notifications (docs/lsp-protocol.md).
REPLACED = "$/vibecode/replaced"
EXITED = "$/vibecode/exited"


@dataclass(frozen=True)
class Ended:
    """Why a bridge ended: ``replaced`` (another connection took the server), ``exited`` (the
    server ended; ``exit_code``), ``broken`` (it broke the protocol or a bound), ``stalled`` (it
    stopped reading), ``closed`` (the stream ended without a word)."""

    reason: str
    detail: str = ""
    exit_code: int | None = None


class LanguageServerBridge:
    """One language server process behind one client. ``next_event`` from the event loop."""

    def __init__(self, stream: ProcessStream, *, server: LanguageServer, label: str) -> None:
        self.server = server
        self.label = label
        self._stream = stream
        self._reader = FrameReader(max_body=settings.VIBECODE_LSP_MAX_MESSAGE_BYTES)
        self._loop = asyncio.get_running_loop()
        self._events: asyncio.Queue[str | Ended] = asyncio.Queue()
        self._held = 0  # bytes delivered to the loop and not yet released
        self._held_lock = threading.Condition()
        self._outbox: queue.Queue[bytes | None] = queue.Queue()
        self._queued = 0
        self._queued_lock = threading.Lock()
        self._ended = threading.Event()
        self._closed = False
        OPEN_LANGUAGE_SERVERS.labels(language=server.language).inc()
        threading.Thread(target=self._read_loop, name=f"lsp-read {label}", daemon=True).start()
        threading.Thread(target=self._write_loop, name=f"lsp-write {label}", daemon=True).start()

    # --- from the event loop -------------------------------------------------------------------

    async def next_event(self) -> str | Ended:
        """The server's next message (a JSON object, as text), or why the bridge ended (last)."""
        return await self._events.get()

    def release(self, size: int) -> None:
        """The client has been sent a message of ``size`` bytes: the reader may read on."""
        with self._held_lock:
            self._held = max(self._held - size, 0)
            self._held_lock.notify_all()

    def send(self, text: str) -> bool:
        """Queue one client message for the server. False when the server has not taken the
        messages queued before it (``WRITE_BUDGET_BYTES``): the caller ends the bridge."""
        data = frame(text.encode("utf-8", "surrogatepass"))
        with self._queued_lock:
            if self._queued + len(data) > WRITE_BUDGET_BYTES:
                return False
            self._queued += len(data)
        self._outbox.put(data)
        return True

    def close(self) -> None:
        """Close the stream: the supervisor sees its stdin end and kills the server. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._outbox.put(None)
        with self._held_lock:
            self._held_lock.notify_all()
        self._stream.close()
        OPEN_LANGUAGE_SERVERS.labels(language=self.server.language).dec()

    # --- threads -------------------------------------------------------------------------------

    def _deliver(self, item: str | Ended) -> None:
        try:
            self._loop.call_soon_threadsafe(self._events.put_nowait, item)
        except RuntimeError:  # the loop has closed: nobody is listening any more
            self._ended.set()

    def _end(self, ended: Ended) -> None:
        if self._ended.is_set():
            return
        self._ended.set()
        LANGUAGE_SERVER_ENDS.labels(language=self.server.language, reason=ended.reason).inc()
        logger.info("language server %s: %s %s", self.label, ended.reason, ended.detail)
        self._deliver(ended)

    def _read_loop(self) -> None:
        try:
            while not self._closed:
                with self._held_lock:
                    while self._held > READ_BUDGET_BYTES and not self._closed:
                        self._held_lock.wait(1.0)
                data = self._stream.read()
                if not data:
                    self._end(Ended("closed", "the stream ended"))
                    return
                for text in self._reader.feed(data):
                    ended = self._supervisor_notice(text)
                    if ended is not None:
                        self._end(ended)
                        return
                    with self._held_lock:
                        self._held += len(text)
                    self._deliver(text)
        except FrameError as exc:
            self._end(Ended("broken", str(exc)))
        except Exception as exc:  # the stream failed under us: the same as its end
            self._end(Ended("closed", f"{type(exc).__name__}: {exc}"))

    def _supervisor_notice(self, text: str) -> Ended | None:
        """Check a message is a JSON object; the supervisor's own notices end the bridge."""
        try:
            message = json.loads(text)
        except ValueError as exc:
            raise FrameError("a message that is not JSON") from exc
        if not isinstance(message, dict):
            raise FrameError("a message that is not a JSON object")
        method = message.get("method")
        if method == REPLACED:
            return Ended("replaced", "another connection started this language's server")
        if method == EXITED:
            params = message.get("params")
            code = params.get("code") if isinstance(params, dict) else None
            code = code if isinstance(code, int) and not isinstance(code, bool) else None
            return Ended("exited", f"exit code {code}", exit_code=code)
        return None

    def _write_loop(self) -> None:
        while True:
            data = self._outbox.get()
            if data is None or self._ended.is_set():
                return
            view = memoryview(data)
            stalled_since = time.monotonic()
            try:
                while view:
                    sent = self._stream.send_some(view, timeout=1.0)
                    if sent:
                        view = view[sent:]
                        stalled_since = time.monotonic()
                    elif self._closed:
                        return
                    elif time.monotonic() - stalled_since > WRITE_STALL_SECONDS:
                        self._end(Ended("stalled", "the server stopped reading its input"))
                        return
            except OSError as exc:
                self._end(Ended("closed", f"writing: {exc}"))
                return
            with self._queued_lock:
                self._queued -= len(data)


async def language_server_open(*, session: Session, server: LanguageServer) -> LanguageServerBridge:
    """Start ``server`` in the session's sandbox (replacing the one of that language already
    there, if any) and bridge it to the running event loop. Raises ``SandboxNotRunning``."""
    open_stream = sync_to_async(language_server_stream, thread_sensitive=False)
    stream = await open_stream(session=session, server=server)
    return LanguageServerBridge(stream, server=server, label=f"{server.language}@{session.public_id}")


def language_server_stream(*, session: Session, server: LanguageServer) -> ProcessStream:
    """The exec stream of a new supervisor for ``server``. Blocking (Docker API)."""
    if session.status != Session.Status.RUNNING:
        raise SandboxNotRunning(f"The session is {session.status}. Resume it for language features.")
    return get_runtime().open_language_server(
        session_ref(session), language=server.language, argv=list(server.argv)
    )
