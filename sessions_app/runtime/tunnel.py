"""TCP connections to and from a sandbox, carried over the Docker API like ``kubectl port-forward``.

Sandboxes have no network. A second helper process per sandbox (``sandbox/agent.py`` started in
``tunnel`` mode) multiplexes TCP connections over its stdin/stdout, an exec stream of the engine:

* **previews**: the backend opens a :class:`Channel` to ``127.0.0.1:<port>`` inside the sandbox
  (:meth:`Tunnel.open` / :meth:`Tunnel.aopen`);
* **egress**: a program in the sandbox connects to ``127.0.0.1:EGRESS_PORT``; the backend gets
  the connection as a channel and hands it to the handler registered with
  :func:`register_accept_handler` (``egress_app`` registers its proxy there).

Opens are pipelined: ``open`` returns at once and a refusal (nothing listening) surfaces on the
first ``recv``. Each direction of each channel has a window of ``WINDOW`` bytes: the helper sends
no more than this side has granted and the other way round, so a stalled reader stalls only its
own connection and memory stays bounded.

The tunnel runs as the sandbox user, who can kill it, stop it or write into its stdout: frames
are bounded and checked, a tunnel that breaks the window or stops beating is declared dead and
its channels fail with :class:`ChannelClosed`; the next ``open`` starts a new one.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import logging
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from core_app.errors import DomainError
from sessions_app.runtime.helper import ProcessStream, take_frame

logger = logging.getLogger(__name__)

# The port the tunnel listens on inside the sandbox for package egress (HTTP(S)_PROXY points here).
EGRESS_PORT = 3128
WINDOW = 1024 * 1024
FRAME = 256 * 1024
CREDIT_BATCH = 64 * 1024
MAX_HEADER_BYTES = 4096
MAX_CHANNELS = 512
# A tunnel silent this long (it beats every second) is stopped or gone.
STALL_SECONDS = 8.0
WAIT_STEP = 1.0


class ChannelRefused(DomainError):
    status_code = 502
    code = "port_not_listening"
    default_detail = "Nothing is listening on that port in the workspace."


class ChannelClosed(DomainError):
    status_code = 502
    code = "tunnel_closed"
    default_detail = "The connection into the workspace was lost. Try again."


AcceptHandler = Callable[[str, "Channel"], None]
_accept_handler: AcceptHandler | None = None


def register_accept_handler(handler: AcceptHandler | None) -> None:
    """``handler(owner, channel)`` runs on a thread of its own for each connection a sandbox
    makes to ``127.0.0.1:EGRESS_PORT``; ``owner`` is what the tunnel was opened for (the
    session's public id). It must close the channel. Without a handler such connections are
    closed at once."""
    global _accept_handler
    _accept_handler = handler


class Channel:
    """One TCP connection through a tunnel. Thread-safe; the async methods are for event loops."""

    def __init__(self, tunnel: Tunnel, ch: int, port: int) -> None:
        self._tunnel = tunnel
        self.ch = ch
        self.port = port
        self._cond = threading.Condition()
        self._buffer = bytearray()
        self._eof = False
        self._refused: str | None = None
        self._lost = False  # the tunnel died
        self._closed = False  # closed by us
        self._peer_closed = False
        self._send_credit = WINDOW
        self._consumed = 0
        self._wakers: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    # --- called by the tunnel's reader --------------------------------------------------------

    def _wake(self) -> None:
        self._cond.notify_all()
        for loop, event in self._wakers:
            loop.call_soon_threadsafe(event.set)

    def _on_data(self, data: bytes) -> bool:
        with self._cond:
            if self._closed:
                return True
            if len(self._buffer) + len(data) > WINDOW:
                return False  # past the window we granted: the tunnel is broken or hostile
            self._buffer += data
            self._wake()
        return True

    def _on_event(self, event: str, header: dict[str, Any]) -> None:
        with self._cond:
            if event == "credit":
                n = header.get("n")
                if isinstance(n, int) and 0 < n <= WINDOW:
                    self._send_credit = min(self._send_credit + n, WINDOW)
            elif event == "eof":
                self._eof = True
            elif event == "refused":
                self._refused = str(header.get("error") or "refused")[:200]
            elif event == "closed":
                self._eof = True
                self._peer_closed = True
            elif event == "lost":
                self._lost = True
            self._wake()

    # --- reading ------------------------------------------------------------------------------

    def _take(self, max_bytes: int) -> bytes | None:
        """Under the lock: the next bytes, b"" at EOF, None when nothing yet. Raises on failure."""
        if self._buffer:
            data = bytes(self._buffer[:max_bytes])
            del self._buffer[:max_bytes]
            self._consumed += len(data)
            if self._consumed >= CREDIT_BATCH or (not self._buffer and self._consumed):
                self._tunnel._send({"op": "credit", "ch": self.ch, "n": self._consumed})
                self._consumed = 0
            return data
        if self._refused is not None:
            raise ChannelRefused(f"Nothing is listening on port {self.port} in the workspace.")
        if self._eof:
            return b""
        if self._lost or self._closed:
            raise ChannelClosed()
        return None

    def recv(self, max_bytes: int = 65536, timeout: float | None = None) -> bytes:
        """The next bytes from the sandbox side; ``b""`` once it finished writing. Raises
        ``ChannelRefused``, ``ChannelClosed``, or ``TimeoutError`` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                data = self._take(max_bytes)
                if data is not None:
                    return data
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError("no data from the workspace in time")
                step = WAIT_STEP if deadline is None else max(min(WAIT_STEP, deadline - time.monotonic()), 0)
                self._cond.wait(step)
                self._tunnel.check()

    async def arecv(self, max_bytes: int = 65536) -> bytes:
        while True:
            with self._cond:
                data = self._take(max_bytes)
                if data is not None:
                    return data
                event = self._waker()
            try:
                await asyncio.wait_for(event.wait(), WAIT_STEP)
            except TimeoutError:
                self._tunnel.check()
            finally:
                self._unwake(event)

    def _waker(self) -> asyncio.Event:
        event = asyncio.Event()
        self._wakers.append((asyncio.get_running_loop(), event))
        return event

    def _unwake(self, event: asyncio.Event) -> None:
        with self._cond:
            self._wakers = [(loop, e) for loop, e in self._wakers if e is not event]

    # --- writing ------------------------------------------------------------------------------

    def _grant(self, wanted: int) -> int | None:
        """Under the lock: how many bytes may go now (taken from the credit), None to wait."""
        if self._closed or self._lost or self._peer_closed:
            raise ChannelClosed()
        if self._refused is not None:
            raise ChannelRefused(f"Nothing is listening on port {self.port} in the workspace.")
        if self._send_credit <= 0:
            return None
        n = min(wanted, self._send_credit, FRAME)
        self._send_credit -= n
        return n

    def send(self, data: bytes, timeout: float | None = None) -> None:
        """Send all of ``data``, waiting while the window is full. Raises ``ChannelClosed``,
        ``ChannelRefused`` or ``TimeoutError``."""
        view = memoryview(data)
        deadline = None if timeout is None else time.monotonic() + timeout
        while view:
            with self._cond:
                n = self._grant(len(view))
                if n is None:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise TimeoutError("the workspace did not read in time")
                    self._cond.wait(WAIT_STEP)
                    self._tunnel.check()
                    continue
            self._tunnel._send({"op": "data", "ch": self.ch}, bytes(view[:n]))
            view = view[n:]

    async def asend(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            with self._cond:
                n = self._grant(len(view))
                event = self._waker() if n is None else None
            if event is not None:
                try:
                    await asyncio.wait_for(event.wait(), WAIT_STEP)
                except TimeoutError:
                    self._tunnel.check()
                finally:
                    self._unwake(event)
                continue
            assert n is not None
            self._tunnel._send({"op": "data", "ch": self.ch}, bytes(view[:n]))
            view = view[n:]

    def shutdown_write(self) -> None:
        """Tell the sandbox side we are done writing (it sees EOF); reading goes on."""
        with self._cond:
            if self._closed or self._lost or self._peer_closed:
                return
        self._tunnel._send({"op": "eof", "ch": self.ch})

    def close(self) -> None:
        """Close the connection both ways. Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            tell = not (self._lost or self._peer_closed)
            self._buffer.clear()
            self._wake()
        self._tunnel._forget(self.ch, tell=tell)

    async def aclose(self) -> None:
        self.close()


class Tunnel:
    """One tunnel process in one sandbox. ``alive`` turns False for good once it is dead."""

    def __init__(
        self,
        stream: ProcessStream,
        *,
        label: str,
        owner: str = "",
        on_dead: Callable[[int | None], None] | None = None,
    ) -> None:
        self._stream: ProcessStream | None = stream
        self.label = label
        self.owner = owner
        self._on_dead = on_dead
        self._channels: dict[int, Channel] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._outbox: collections.deque[bytes] = collections.deque()
        self._out_cond = threading.Condition()
        self.alive = True
        self.pid: int | None = None
        self._ready = threading.Event()  # its hello came: the egress port listens
        self._last_frame = time.monotonic()
        threading.Thread(target=self._read_loop, name=f"tunnel-{label}", daemon=True).start()
        threading.Thread(target=self._write_loop, name=f"tunnel-w-{label}", daemon=True).start()

    # --- opening ------------------------------------------------------------------------------

    def open(self, port: int) -> Channel:
        """A connection to ``127.0.0.1:<port>`` in the sandbox. Pipelined: a refusal surfaces
        on the channel's first ``recv``. Raises ``ChannelClosed`` when the tunnel is dead."""
        if not 0 < int(port) < 65536:
            raise ChannelRefused(f"{port} is not a TCP port.")
        self.check()
        with self._lock:
            if len(self._channels) >= MAX_CHANNELS:
                raise ChannelClosed("The workspace has too many open connections.")
            channel = Channel(self, next(self._ids), int(port))
            self._channels[channel.ch] = channel
        self._send({"op": "open", "ch": channel.ch, "port": channel.port})
        return channel

    async def aopen(self, port: int) -> Channel:
        return self.open(port)

    def wait_ready(self, timeout: float) -> bool:
        """Wait until the tunnel process said hello (its egress port listens); False if not."""
        return self._ready.wait(timeout) and self.alive

    def channel_count(self) -> int:
        with self._lock:
            return len(self._channels)

    # --- health -------------------------------------------------------------------------------

    def check(self) -> None:
        """Raise ``ChannelClosed`` unless alive; declare a tunnel that stopped beating dead."""
        if self.alive and time.monotonic() - self._last_frame > STALL_SECONDS:
            self.declare_dead(f"silent for {STALL_SECONDS:.0f} s")
        if not self.alive:
            raise ChannelClosed()

    def stalled(self) -> bool:
        return time.monotonic() - self._last_frame > STALL_SECONDS

    def declare_dead(self, reason: str) -> None:
        with self._lock:
            if not self.alive and self._stream is None:
                return
            self.alive = False
            stream, self._stream = self._stream, None
            channels = list(self._channels.values())
            self._channels.clear()
        self._ready.set()
        level = logging.INFO if reason in {"closed", "its stream ended"} else logging.WARNING
        logger.log(level, "tunnel %s declared dead: %s", self.label, reason)
        if stream is not None:
            stream.close()
        for channel in channels:
            channel._on_event("lost", {})
        with self._out_cond:
            self._outbox.clear()
            self._out_cond.notify_all()
        if self._on_dead is not None:
            try:
                self._on_dead(self.pid)
            except Exception as exc:  # its container stopped or went: nothing left to kill
                logger.info("tunnel %s: did not kill the old process (%s)", self.label, exc)

    def close(self) -> None:
        self.declare_dead("closed")

    # --- wire ---------------------------------------------------------------------------------

    def _send(self, header: dict[str, Any], payload: bytes = b"") -> None:
        data = json.dumps(dict(header, size=len(payload)), separators=(",", ":")).encode()
        with self._out_cond:
            if not self.alive:
                raise ChannelClosed()
            self._outbox.append(struct.pack(">I", len(data)) + data + payload)
            self._out_cond.notify()

    def _forget(self, ch: int, *, tell: bool) -> None:
        with self._lock:
            self._channels.pop(ch, None)
        if tell and self.alive:
            try:
                self._send({"op": "close", "ch": ch})
            except ChannelClosed:
                pass

    def _write_loop(self) -> None:
        while True:
            with self._out_cond:
                while self.alive and not self._outbox:
                    self._out_cond.wait()
                if not self.alive:
                    return
                batch = b"".join(self._outbox)
                self._outbox.clear()
            stream = self._stream
            if stream is None:
                return
            try:
                stream.write(batch)
            except OSError as exc:
                self.declare_dead(f"a write failed ({exc})")
                return

    def _read_loop(self) -> None:
        buffer = bytearray()
        stream = self._stream
        assert stream is not None
        try:
            while True:
                chunk = stream.read()
                if not chunk:
                    break
                buffer += chunk
                while (
                    frame := take_frame(buffer, max_header=MAX_HEADER_BYTES, max_payload=FRAME)
                ) is not None:
                    self._last_frame = time.monotonic()
                    self._dispatch(*frame)
            reason = "its stream ended"
        except Exception as exc:
            reason = f"it sent garbage ({exc})"
        if self.alive:
            self.declare_dead(reason)

    def _dispatch(self, header: dict[str, Any], payload: bytes) -> None:
        if header.get("id") == 0:
            if header.get("hello") and isinstance(header.get("pid"), int):
                self.pid = header["pid"]
                self._ready.set()
            elif header.get("ev") == "warning":
                logger.warning("tunnel %s: %s", self.label, str(header.get("detail"))[:300])
            return
        event, ch = header.get("ev"), header.get("ch")
        if not isinstance(ch, int):
            raise ValueError("a frame without a channel")
        if event == "accept":
            self._accepted(ch)
            return
        with self._lock:
            channel = self._channels.get(ch)
        if channel is None:
            return  # closed on this side already
        if event == "data":
            if not channel._on_data(payload):
                raise ValueError(f"channel {ch} sent past its window")
            return
        if event in {"closed", "refused"}:
            with self._lock:
                self._channels.pop(ch, None)
        channel._on_event(str(event), header)

    def _accepted(self, ch: int) -> None:
        if ch >= 0:
            raise ValueError("an accepted channel with a backend id")
        handler = _accept_handler
        with self._lock:
            full = len(self._channels) >= MAX_CHANNELS or ch in self._channels
            channel = Channel(self, ch, EGRESS_PORT)
            if not full and handler is not None:
                self._channels[ch] = channel
        if full or handler is None:
            self._send({"op": "close", "ch": ch})
            return

        def serve() -> None:
            try:
                handler(self.owner, channel)
            except Exception:
                logger.exception("tunnel %s: the accept handler failed", self.label)
            finally:
                channel.close()

        threading.Thread(target=serve, name=f"accept-{self.label}", daemon=True).start()


class TunnelPool:
    """One tunnel per running container in this process, started on demand, replaced when dead."""

    def __init__(self) -> None:
        self._tunnels: dict[str, Tunnel] = {}
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def get(
        self,
        key: str,
        *,
        start: Callable[[], ProcessStream],
        label: str,
        owner: str,
        on_dead: Callable[[int | None], None] | None = None,
    ) -> Tunnel:
        tunnel = self._tunnels.get(key)
        if tunnel is not None and tunnel.alive and tunnel.stalled():
            tunnel.declare_dead("silent while idle")
        if tunnel is not None and tunnel.alive:
            return tunnel
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            tunnel = self._tunnels.get(key)
            if tunnel is not None and tunnel.alive:
                return tunnel
            tunnel = Tunnel(start(), label=label, owner=owner, on_dead=on_dead)
            with self._guard:
                self._tunnels[key] = tunnel
                for dead in [k for k, t in self._tunnels.items() if not t.alive]:
                    del self._tunnels[dead]
                    self._locks.pop(dead, None)
            return tunnel

    def peek(self, key: str) -> Tunnel | None:
        """The live tunnel of ``key`` if there is one, without starting any."""
        tunnel = self._tunnels.get(key)
        return tunnel if tunnel is not None and tunnel.alive else None

    def discard(self, key: str) -> None:
        with self._guard:
            tunnel = self._tunnels.pop(key, None)
        if tunnel is not None:
            tunnel.close()
