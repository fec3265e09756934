"""The backend side of the persistent helper inside each sandbox: the runtime's one door for
files, exec and streams.

One :class:`HelperClient` per running container, started on demand and restarted when it dies.
It multiplexes requests over the helper's stdin/stdout (see ``sandbox/agent.py`` for the frame
format): callers on any thread send a request and wait for the frames with their id, which a
reader thread dispatches. The helper walks every path itself, so it is never a way around the
path checks.
"""

from __future__ import annotations

import abc
import itertools
import json
import logging
import queue
import struct
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from core_app.errors import DomainError
from core_app.metrics import AGENT_RESTARTS
from sandbox import AGENT_SOURCE
from sessions_app.runtime.errors import RuntimeFailure

logger = logging.getLogger(__name__)

HELPER_ARGV = ["python3", "-u", "-c", AGENT_SOURCE, "serve"]
# Results (a listing, an exec's capped output in base64) stay well under this.
MAX_HEADER_BYTES = 16 * 1024 * 1024


def max_payload_bytes() -> int:
    """The largest payload a helper frame may carry: a file read for the editor."""
    return int(settings.VIBECODE_MAX_EDIT_BYTES) + 1024 * 1024


class ProcessStream(abc.ABC):
    """A long-lived process in a sandbox with its stdin and stdout as a byte stream (no TTY).
    Used for the persistent helper; stderr is not part of the stream."""

    @abc.abstractmethod
    def write(self, data: bytes) -> None:
        """Send bytes to the process's stdin. Raises ``OSError`` once the process is gone."""

    @abc.abstractmethod
    def read(self) -> bytes:
        """The next bytes of its stdout; ``b""`` once it has ended."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close both directions; the process sees EOF on stdin. Idempotent."""


CHUNK = 256 * 1024
_GONE = object()


class HelperError(DomainError):
    """An error the helper reported (not found, conflict, symlink refused...)."""


class HelperGone(RuntimeFailure):
    code = "helper_unavailable"
    default_detail = "The session's helper process stopped. Try again; it restarts by itself."


@dataclass
class Reply:
    result: dict[str, Any]
    data: bytes


class HelperClient:
    def __init__(self, stream: ProcessStream, *, label: str) -> None:
        self._stream = stream
        self.label = label
        self._send_lock = threading.Lock()
        self._pending: dict[int, queue.SimpleQueue[Any]] = {}
        self._pending_lock = threading.Lock()
        self._ids = itertools.count(1)
        self.alive = True
        self._reader = threading.Thread(target=self._read_loop, name=f"agent-{label}", daemon=True)
        self._reader.start()

    # --- wire ---------------------------------------------------------------------------------

    def _read_loop(self) -> None:
        buffer = bytearray()
        try:
            while True:
                chunk = self._stream.read()
                if not chunk:
                    return
                buffer += chunk
                while len(buffer) >= 4:
                    (length,) = struct.unpack(">I", buffer[:4])
                    # The helper runs as the sandbox user, who can write to its stdout: its frames
                    # are untrusted, and an oversized one ends the connection rather than the backend.
                    if length > MAX_HEADER_BYTES:
                        raise ValueError(f"a {length}-byte header from the helper")
                    if len(buffer) < 4 + length:
                        break
                    header = json.loads(buffer[4 : 4 + length])
                    size = int(header.get("size") or 0)
                    if not 0 <= size <= max_payload_bytes():
                        raise ValueError(f"a {size}-byte payload from the helper")
                    if len(buffer) < 4 + length + size:
                        break
                    payload = bytes(buffer[4 + length : 4 + length + size])
                    del buffer[: 4 + length + size]
                    with self._pending_lock:
                        waiter = self._pending.get(header.get("id"))
                    if waiter is not None:
                        waiter.put((header, payload))
        except Exception:
            logger.exception("helper %s: reading failed; the connection is dropped", self.label)
        finally:
            self.alive = False
            with self._pending_lock:
                waiters = list(self._pending.values())
            for waiter in waiters:
                waiter.put(_GONE)

    def _send(
        self, request_id: int, op: str, args: dict[str, Any], payload: Iterable[bytes], size: int
    ) -> None:
        header = json.dumps({"id": request_id, "op": op, "args": args, "size": size}).encode()
        with self._send_lock:
            try:
                self._stream.write(struct.pack(">I", len(header)) + header)
                sent = 0
                for chunk in payload:
                    self._stream.write(chunk)
                    sent += len(chunk)
                if sent != size:
                    raise ValueError(f"payload was {sent} bytes, announced {size}")
            except OSError as exc:
                self.alive = False
                raise HelperGone() from exc

    def _frames(
        self, op: str, args: dict[str, Any], payload: Iterable[bytes], size: int, timeout: float
    ) -> Iterator[tuple[dict[str, Any], bytes]]:
        if not self.alive:
            raise HelperGone()
        request_id = next(self._ids)
        waiter: queue.SimpleQueue[Any] = queue.SimpleQueue()
        with self._pending_lock:
            self._pending[request_id] = waiter
        try:
            self._send(request_id, op, args, payload, size)
            while True:
                try:
                    item = waiter.get(timeout=timeout)
                except queue.Empty:
                    raise HelperGone(f"The session's helper did not answer within {timeout:.0f} s.") from None
                if item is _GONE:
                    raise HelperGone()
                header, data = item
                if not header.get("ok"):
                    error = header.get("error") or {}
                    failure = HelperError(error.get("detail"), code=error.get("code", "agent_error"))
                    failure.status_code = int(error.get("status", 400))
                    failure.extra = {k: v for k, v in error.items() if k not in {"code", "detail", "status"}}
                    raise failure
                yield header, data
                if not header.get("more"):
                    return
        finally:
            with self._pending_lock:
                self._pending.pop(request_id, None)

    # --- calls --------------------------------------------------------------------------------

    def call(
        self,
        op: str,
        args: dict[str, Any] | None = None,
        *,
        payload: bytes | Iterable[bytes] = b"",
        size: int | None = None,
        timeout: float = 60.0,
    ) -> Reply:
        """One request, one answer. ``payload`` may be an iterable of chunks with ``size`` given."""
        if isinstance(payload, bytes):
            size, chunks = len(payload), [payload] if payload else []
        else:
            chunks = payload
            assert size is not None, "a streamed payload needs its size"
        for header, data in self._frames(op, args or {}, chunks, size, timeout):
            if not header.get("more"):
                return Reply(header.get("result") or {}, data)
        raise HelperGone()

    def stream(
        self, op: str, args: dict[str, Any] | None = None, *, timeout: float = 300.0
    ) -> Iterator[bytes]:
        """A request whose answer comes as a stream of chunks (a zip of a folder)."""
        for header, data in self._frames(op, args or {}, [], 0, timeout):
            if header.get("more"):
                yield data

    def close(self) -> None:
        self.alive = False
        self._stream.close()


class HelperPool:
    """One helper per running container in this process, started on demand, restarted when dead.

    ``start`` starts a helper process (the runtime's ``open_stream``). Keys are container ids,
    so a re-created container never reuses a dead container's helper.
    """

    def __init__(self) -> None:
        self._helpers: dict[str, HelperClient] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock_for(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def get(self, key: str, *, start: Callable[[], ProcessStream], label: str) -> HelperClient:
        helper = self._helpers.get(key)
        if helper is not None and helper.alive:
            return helper
        with self._lock_for(key):
            helper = self._helpers.get(key)
            if helper is not None and helper.alive:
                return helper
            if helper is not None:
                AGENT_RESTARTS.inc()
                logger.warning("helper %s died; restarting it", label)
            helper = HelperClient(start(), label=label)
            self._helpers[key] = helper
            self._prune()
            return helper

    def _prune(self) -> None:
        for key in [key for key, helper in self._helpers.items() if not helper.alive]:
            del self._helpers[key]
