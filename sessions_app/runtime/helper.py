"""The backend side of the persistent helper inside each sandbox: the runtime's one door for
files, exec and streams.

One :class:`HelperClient` per running container, started on demand and restarted when it dies.
It multiplexes requests over the helper's stdin/stdout (see ``sandbox/agent.py`` for the frame
format): callers on any thread send a request and wait for the frames with their id, which a
reader thread dispatches. The helper walks every path itself, so it is never a way around the
path checks.

The helper runs as the sandbox user, who can kill it, stop it, or write into its stdout. So the
backend trusts nothing it says and bounds everything it waits for:

* every call has a total deadline (``VIBECODE_HELPER_DEADLINE_SECONDS``; an exec its own timeout
  plus a margin), however many frames arrive; a helper that misses one is declared dead, closed
  and replaced;
* the helper beats once a second; a helper silent for ``VIBECODE_HELPER_STALL_SECONDS`` while a
  call waits on it (stopped, or gone while someone holds its pipe) is declared dead too, as is
  one whose process the engine reports ended;
* sends and the send lock wait at most until the deadline; a reply carries bounded bytes; each
  workspace has a bounded number of calls in flight (past it, a fast 503 ``workspace_busy``);
* a stream's frames go through a bounded queue: when its consumer is slow, the reader stops
  reading, the helper blocks on its write, and memory stays flat (use a private helper for a
  stream, so that pausing it pauses nobody else).
"""

from __future__ import annotations

import abc
import base64
import itertools
import json
import logging
import queue
import struct
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from core_app.errors import DomainError
from core_app.metrics import AGENT_RESTARTS
from sandbox import AGENT_PROGRAM
from sessions_app.runtime.errors import RuntimeFailure

logger = logging.getLogger(__name__)

# The image's interpreter by absolute path (never whatever ``python3`` the user put first on
# PATH), isolated (-I: no PYTHON* variables, user site, .pth of the user's, or cwd on sys.path),
# started in / (see ``HELPER_WORKDIR``).
# The trailing "serve" is only a name for the process (tools and tests look for it).
HELPER_ARGV = ["/usr/bin/python3", "-I", "-u", "-c", AGENT_PROGRAM, "serve"]
HELPER_WORKDIR = "/"
# Results (a listing, an exec's capped output in base64) stay well under this.
MAX_HEADER_BYTES = 16 * 1024 * 1024
# How often a waiting call checks the helper's health.
CHECK_SECONDS = 1.0
# How often at most a waiting call asks the engine whether the helper's process still runs.
EXIT_CHECK_SECONDS = 2.0
# An exec's deadline is its own timeout plus this (the helper kills the run, then answers).
EXEC_MARGIN_SECONDS = 10.0
# A stream's frames buffered between the reader and a slow consumer (256 KB each).
STREAM_QUEUE_FRAMES = 4


def max_payload_bytes() -> int:
    """The largest payload a helper frame may carry: a file read for the editor."""
    return int(settings.VIBECODE_MAX_EDIT_BYTES) + 1024 * 1024


def deadline_seconds() -> float:
    return float(settings.VIBECODE_HELPER_DEADLINE_SECONDS)


def take_frame(
    buffer: bytearray, *, max_header: int, max_payload: int
) -> tuple[dict[str, Any], bytes] | None:
    """Cut the next whole frame (a 4-byte big-endian length, a JSON header object, then
    ``header["size"]`` payload bytes) from the front of ``buffer``; None until more bytes come.
    The helper and the tunnel run as the sandbox user, who can write into their stdout: a frame
    over the limits, or not of that shape, raises ``ValueError`` (the caller drops the process)."""
    if len(buffer) < 4:
        return None
    (length,) = struct.unpack(">I", buffer[:4])
    if length > max_header:
        raise ValueError(f"a {length}-byte header")
    if len(buffer) < 4 + length:
        return None
    header = json.loads(buffer[4 : 4 + length])
    if not isinstance(header, dict):
        raise ValueError("a frame header that is not an object")
    size = header.get("size") or 0
    if not isinstance(size, int) or not 0 <= size <= max_payload:
        raise ValueError(f"a {size!r}-byte payload")
    if len(buffer) < 4 + length + size:
        return None
    payload = bytes(buffer[4 + length : 4 + length + size])
    del buffer[: 4 + length + size]
    return header, payload


class ProcessStream(abc.ABC):
    """A long-lived process in a sandbox with its stdin and stdout as a byte stream (no TTY).
    Used for the persistent helper; stderr is not part of the stream."""

    @abc.abstractmethod
    def write(self, data: bytes) -> None:
        """Send bytes to the process's stdin, blocking. Raises ``OSError`` once it is gone."""

    def send_some(self, data: memoryview, *, timeout: float) -> int:
        """Send a prefix of ``data`` within ``timeout`` seconds and return its length; 0 when
        the process took nothing in that time. Raises ``OSError`` once it is gone. Backends
        that cannot bound a send block instead (the default)."""
        self.write(bytes(data))
        return len(data)

    @abc.abstractmethod
    def read(self) -> bytes:
        """The next bytes of its stdout; ``b""`` once it has ended."""

    def exited(self) -> bool:
        """True once the engine reports the process ended, even while something else still
        holds its stdout open. False when unknown."""
        return False

    @abc.abstractmethod
    def close(self) -> None:
        """Close both directions; the process sees EOF on stdin. Idempotent."""


# A stream (a download) may wait on its helper for the deadline plus this much time per byte.
STREAM_MIN_RATE = 256 * 1024  # bytes per second

CHUNK = 256 * 1024
_GONE = object()


class HelperError(DomainError):
    """An error the helper reported (not found, conflict, symlink refused...)."""


class HelperGone(RuntimeFailure):
    status_code = 503  # passing: a new helper replaces it on the next call
    code = "helper_unavailable"
    default_detail = "The session's helper process stopped. Try again; it restarts by itself."


class WorkspaceBusy(DomainError):
    status_code = 503
    code = "workspace_busy"
    default_detail = "The workspace has too many operations under way. Try again in a moment."


class CallSlots:
    """A cap on the calls in flight to one workspace, across its shared and private helpers.
    Never waits: past the cap a call fails at once with ``WorkspaceBusy``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            if self.used >= self.limit:
                raise WorkspaceBusy()
            self.used += 1

    def release(self) -> None:
        with self._lock:
            self.used = max(self.used - 1, 0)


@dataclass
class Reply:
    result: dict[str, Any]
    data: bytes


class _Waiter:
    def __init__(self, *, bounded: bool) -> None:
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=STREAM_QUEUE_FRAMES if bounded else 0)
        self.abandoned = False


class HelperClient:
    """One helper process. Thread-safe; ``alive`` turns False for good once it is dead."""

    def __init__(
        self,
        stream: ProcessStream,
        *,
        label: str,
        slots: CallSlots | None = None,
        on_dead: Callable[[int | None], None] | None = None,
        single_use: bool = False,
    ) -> None:
        self._stream = stream
        self.label = label
        # A private helper serves one stream: it is closed when that stream ends in any way,
        # including a response dropped before its body was read (the generator is collected).
        self._single_use = single_use
        self._slots = slots or CallSlots(int(settings.VIBECODE_HELPER_MAX_CALLS))
        self._on_dead = on_dead
        self._send_lock = threading.Lock()
        self._pending: dict[int, _Waiter] = {}
        self._pending_lock = threading.Lock()
        self._dead_lock = threading.Lock()
        self._ids = itertools.count(1)
        self.alive = True
        self.pid: int | None = None  # the helper's pid in the sandbox, from its hello
        self._last_frame = time.monotonic()
        self._reader_paused = False  # waiting for a slow stream consumer: silence is ours
        self._next_exit_check = 0.0
        self._reader = threading.Thread(target=self._read_loop, name=f"agent-{label}", daemon=True)
        self._reader.start()

    # --- health -------------------------------------------------------------------------------

    def declare_dead(self, reason: str) -> None:
        """Close this helper for good (the pool starts a new one on the next call). Idempotent."""
        with self._dead_lock:
            if not self.alive and self._stream is None:
                return
            self.alive = False
            stream, self._stream = self._stream, None  # type: ignore[assignment]
        logger.warning("helper %s declared dead: %s; closed, a new one replaces it", self.label, reason)
        if stream is not None:
            stream.close()
        self._wake_all()
        if self._on_dead is not None:
            try:
                self._on_dead(self.pid)
            except Exception:
                logger.warning("helper %s: could not kill the old process", self.label, exc_info=True)

    def _wake_all(self) -> None:
        with self._pending_lock:
            waiters = list(self._pending.values())
        for waiter in waiters:
            waiter.abandoned = True
            try:
                waiter.queue.put_nowait(_GONE)
            except queue.Full:
                pass  # its consumer sees ``alive`` False on its next check

    def _check(self, *, deadline: float, since: float, what: str, fatal_deadline: bool = True) -> None:
        """Raise unless the helper is alive and ``deadline`` not passed. ``since``: when the
        caller started waiting without progress; silence since then beyond the stall limit, or
        an ended process, means the helper is dead."""
        if not self.alive:
            raise HelperGone()
        now = time.monotonic()
        if now >= deadline:
            if fatal_deadline:
                self.declare_dead(f"missed its deadline while {what}")
                raise HelperGone("The session's helper did not answer in time; it is being restarted.")
            raise WorkspaceBusy("The workspace is busy with another operation. Try again in a moment.")
        stall = float(settings.VIBECODE_HELPER_STALL_SECONDS)
        if not self._reader_paused and now - max(self._last_frame, since) > stall:
            self.declare_dead(f"silent for {stall:.0f} s while {what}")
            raise HelperGone("The session's helper stopped answering; it is being restarted.")
        if now >= self._next_exit_check and now - since >= EXIT_CHECK_SECONDS:
            self._next_exit_check = now + EXIT_CHECK_SECONDS
            stream = self._stream
            if stream is not None and stream.exited():
                self.declare_dead(f"its process ended while {what}")
                raise HelperGone()

    # --- wire ---------------------------------------------------------------------------------

    def _read_loop(self) -> None:
        buffer = bytearray()
        stream = self._stream
        try:
            while True:
                chunk = stream.read()
                if not chunk:
                    return
                buffer += chunk
                limit = max_payload_bytes()
                while (
                    frame := take_frame(buffer, max_header=MAX_HEADER_BYTES, max_payload=limit)
                ) is not None:
                    self._last_frame = time.monotonic()
                    self._dispatch(*frame)
        except Exception as exc:
            if self.alive:
                logger.warning("helper %s: reading failed (%s); the connection is dropped", self.label, exc)
        finally:
            self.alive = False
            self._wake_all()

    def _dispatch(self, header: dict[str, Any], payload: bytes) -> None:
        request_id = header.get("id")
        if request_id == 0:
            if header.get("hello") and isinstance(header.get("pid"), int):
                self.pid = header["pid"]
            return
        with self._pending_lock:
            waiter = self._pending.get(request_id)  # type: ignore[arg-type]
        if waiter is None:
            return  # a call that gave up, or a forged id
        # A stream's queue is bounded: while its consumer is slow this blocks, nothing more is
        # read from the helper, and the helper blocks on its write (backpressure).
        self._reader_paused = True
        try:
            while not waiter.abandoned and self.alive:
                try:
                    waiter.queue.put((header, payload), timeout=CHECK_SECONDS)
                    break
                except queue.Full:
                    continue
        finally:
            self._reader_paused = False
            self._last_frame = time.monotonic()

    def silent(self) -> bool:
        """True when the helper has not beaten for the stall time while its reader was free to
        hear it: stopped (SIGSTOP), or gone while something holds its pipe open."""
        if self._reader_paused:
            return False
        return time.monotonic() - self._last_frame > float(settings.VIBECODE_HELPER_STALL_SECONDS)

    def _send(
        self,
        request_id: int,
        op: str,
        args: dict[str, Any],
        payload: Iterable[bytes],
        size: int,
        deadline: float,
    ) -> None:
        header = json.dumps({"id": request_id, "op": op, "args": args, "size": size}).encode()
        since = time.monotonic()
        # Another call's large send may hold the lock: that is not this helper's fault, so
        # running out of time here fails this call only.
        while not self._send_lock.acquire(timeout=CHECK_SECONDS):
            self._check(deadline=deadline, since=since, what="waiting to send", fatal_deadline=False)
        try:
            self._write_all(struct.pack(">I", len(header)) + header, deadline, op)
            sent = 0
            for chunk in payload:
                self._write_all(chunk, deadline, op)
                sent += len(chunk)
            if sent != size:
                raise ValueError(f"payload was {sent} bytes, announced {size}")
        except OSError as exc:
            self.declare_dead(f"a send failed ({exc})")
            raise HelperGone() from exc
        finally:
            self._send_lock.release()

    def _write_all(self, data: bytes, deadline: float, op: str) -> None:
        view = memoryview(data)
        since = time.monotonic()
        while view:
            stream = self._stream
            if stream is None:
                raise HelperGone()
            remaining = deadline - time.monotonic()
            sent = stream.send_some(view, timeout=max(min(remaining, CHECK_SECONDS), 0.0))
            if sent:
                view = view[sent:]
                since = time.monotonic()
            else:
                self._check(deadline=deadline, since=since, what=f"sending a {op} request")

    def _frames(
        self,
        op: str,
        args: dict[str, Any],
        payload: Iterable[bytes],
        size: int,
        *,
        timeout: float,
        total: bool,
        max_bytes: int,
    ) -> Iterator[tuple[dict[str, Any], bytes]]:
        """The frames answering one request. ``total``: ``timeout`` bounds the whole call;
        otherwise each wait for the next frame (a stream read by a slow client)."""
        if not self.alive:
            raise HelperGone()
        self._slots.acquire()
        request_id = next(self._ids)
        waiter = _Waiter(bounded=not total)
        with self._pending_lock:
            self._pending[request_id] = waiter
        try:
            started = time.monotonic()
            deadline = started + timeout
            self._send(request_id, op, args, payload, size, deadline)
            received = 0
            waited = 0.0  # a stream's time spent waiting on the helper, not on its reader
            while True:
                if not total:
                    deadline = time.monotonic() + timeout
                asked = time.monotonic()
                item = self._next(waiter, deadline, op)
                header, data = item
                received += len(data)
                if received > max_bytes:
                    self.declare_dead(f"sent over {max_bytes} bytes for one {op}")
                    raise HelperGone()
                now = time.monotonic()
                if total and now > deadline:
                    # Frames arriving without end (forged "more" frames) never extend a call.
                    self.declare_dead(f"kept answering a {op} past its {timeout:.0f} s deadline")
                    raise HelperGone(f"The session's helper did not finish within {timeout:.0f} s.")
                waited += now - asked
                if not total and waited > timeout + received / STREAM_MIN_RATE:
                    # A helper that drips a stream would hold a server thread for ever.
                    self.declare_dead(f"streamed a {op} slower than {STREAM_MIN_RATE // 1024} KiB/s")
                    raise HelperGone()
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
            waiter.abandoned = True
            with self._pending_lock:
                self._pending.pop(request_id, None)
            self._slots.release()
            if self._single_use:
                self.close()

    def _next(self, waiter: _Waiter, deadline: float, op: str) -> tuple[dict[str, Any], bytes]:
        since = time.monotonic()
        while True:
            remaining = deadline - time.monotonic()
            try:
                item = waiter.queue.get(timeout=max(min(remaining, CHECK_SECONDS), 0.001))
            except queue.Empty:
                self._check(deadline=deadline, since=since, what=f"answering a {op}")
                continue
            if item is _GONE:
                raise HelperGone()
            return item  # type: ignore[no-any-return]

    # --- calls --------------------------------------------------------------------------------

    def call(
        self,
        op: str,
        args: dict[str, Any] | None = None,
        *,
        payload: bytes | Iterable[bytes] = b"",
        size: int | None = None,
        timeout: float | None = None,
    ) -> Reply:
        """One request, one answer, within ``timeout`` seconds in all (default: the helper
        deadline), or ``HelperGone``. ``payload`` may be an iterable of chunks with ``size``."""
        chunks: Iterable[bytes]
        if isinstance(payload, bytes):
            size, chunks = len(payload), [payload] if payload else []
        else:
            chunks = payload
            assert size is not None, "a streamed payload needs its size"
        seconds = deadline_seconds() if timeout is None else timeout
        frames = self._frames(
            op,
            args or {},
            chunks,
            size,
            timeout=seconds,
            total=True,
            max_bytes=max_payload_bytes() + MAX_HEADER_BYTES,
        )
        for header, data in frames:
            if not header.get("more"):
                return Reply(header.get("result") or {}, data)
        raise HelperGone()

    def stream(
        self,
        op: str,
        args: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        max_bytes: int | None = None,
    ) -> Generator[bytes, None, None]:
        """A request whose answer comes as a stream of chunks (a download, a zip). ``timeout``
        bounds each wait for the next chunk (default: the helper deadline), ``max_bytes`` the
        whole stream. The chunks pass a bounded queue: read them slowly and the helper waits."""
        seconds = deadline_seconds() if timeout is None else timeout
        limit = max_bytes if max_bytes is not None else 1 << 62
        for header, data in self._frames(
            op, args or {}, [], 0, timeout=seconds, total=False, max_bytes=limit
        ):
            if header.get("more"):
                yield data

    def exec(
        self,
        argv: list[str],
        *,
        timeout: float,
        output_limit: int,
        cwd: str = "/workspace",
        stdin: bytes = b"",
        env: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Run ``argv`` (no shell) as the sandbox user, supervised by the helper: on timeout,
        and when it ends in any case, all its processes are killed (setsid and double forks
        too). The raw result (``ExecResult.from_helper`` reads it); deadline: timeout + margin."""
        request = {
            "argv": argv,
            "cwd": cwd,
            "env": dict(env or {}),
            "timeout": timeout,
            "limit": output_limit,
            "stdin": base64.b64encode(stdin).decode(),
        }
        return self.call("exec", request, timeout=timeout + EXEC_MARGIN_SECONDS).result

    def close(self) -> None:
        self.alive = False
        with self._dead_lock:
            stream, self._stream = self._stream, None  # type: ignore[assignment]
        if stream is not None:
            stream.close()
        self._wake_all()


class HelperPool:
    """One helper per running container in this process, started on demand, restarted when dead.

    ``start`` starts a helper process (the runtime's ``open_stream``). Keys are container ids,
    so a re-created container never reuses a dead container's helper.
    """

    def __init__(self) -> None:
        self._helpers: dict[str, HelperClient] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._slots: dict[str, CallSlots] = {}
        self._guard = threading.Lock()

    def _lock_for(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def slots_for(self, key: str) -> CallSlots:
        """The calls-in-flight cap of one workspace, shared by its shared and private helpers."""
        with self._guard:
            return self._slots.setdefault(key, CallSlots(int(settings.VIBECODE_HELPER_MAX_CALLS)))

    def get(
        self,
        key: str,
        *,
        start: Callable[[], ProcessStream],
        label: str,
        on_dead: Callable[[int | None], None] | None = None,
    ) -> HelperClient:
        helper = self._helpers.get(key)
        if helper is not None and helper.alive and helper.silent():
            # Stopped while idle: replace it now rather than let the next call find out.
            helper.declare_dead("silent while idle")
        if helper is not None and helper.alive:
            return helper
        lock = self._lock_for(key)
        # Starting a helper is one engine call; a start stuck longer than a deadline fails.
        if not lock.acquire(timeout=deadline_seconds()):
            raise WorkspaceBusy("The session's helper is still starting. Try again in a moment.")
        try:
            helper = self._helpers.get(key)
            if helper is not None and helper.alive:
                return helper
            if helper is not None:
                AGENT_RESTARTS.inc()
                logger.warning("helper %s died; restarting it", label)
            helper = HelperClient(start(), label=label, slots=self.slots_for(key), on_dead=on_dead)
            self._helpers[key] = helper
            self._prune()
            return helper
        finally:
            lock.release()

    def discard(self, key: str) -> None:
        """Close and forget the helper of a container that is stopping or starting: its process
        dies with the container, and the end of its stream may reach us late (gVisor), after
        the next call was already sent to it."""
        with self._guard:
            helper = self._helpers.pop(key, None)
        if helper is not None:
            helper.close()

    def _prune(self) -> None:
        with self._guard:
            for key in [key for key, helper in list(self._helpers.items()) if not helper.alive]:
                del self._helpers[key]
            for key in [k for k, slots in self._slots.items() if k not in self._helpers and not slots.used]:
                del self._slots[key]
