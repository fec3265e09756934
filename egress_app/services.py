"""The egress proxy: what the backend does with a connection a sandbox made to 127.0.0.1:3128.

Sandboxes have no network. The tunnel helper inside one accepts on 127.0.0.1:3128 (where
``HTTP(S)_PROXY`` point) and hands each connection to the backend as a channel over the Docker
API; :func:`egress_serve` then speaks just enough HTTP proxy for pip, npm and git:

* ``CONNECT host:port`` (every https request): policy, connect upstream, ``200 Connection
  established``, then bytes both ways until both sides finish;
* an absolute-form request (``GET http://host/path``): policy, then the request is forwarded
  (origin-form, ``Host`` from the URL, hop-by-hop headers dropped, ``Connection: close``) and the
  response streamed back. Bodies need a ``Content-Length``.

Refusals answer ``403 Forbidden (<reason>)`` with the reason (``host not allowed``, ``address
refused``, ``port not allowed``, ``egress is off``) in the status line and a one-line body; bad
requests 400 (431 for a head over :data:`HEAD_LIMIT`, 408 when it is too slow), upstream failures
502, upstream connect timeouts 504, past the connection caps 503.

Bounded everywhere: the head (size and time), each direction's buffer (one chunk in flight; the
channel's window and the socket's buffers do the rest), open connections per workspace and per
process, bytes per connection, and idle time (a watchdog thread closes connections that moved no
byte either way for ``VIBECODE_EGRESS_IDLE_TIMEOUT_SECONDS``). Each connection that sent a request
leaves one :class:`EgressConnection` row and counts in the ``vibecode_egress_*`` metrics.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol
from urllib.parse import urlsplit

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from core_app.errors import DomainError
from core_app.metrics import EGRESS_BYTES, EGRESS_CONNECTIONS, EGRESS_OPEN
from egress_app.models import EgressConnection
from egress_app.policy import Destination, EgressRefused, EgressUnresolvable, egress_destination
from sessions_app.models import Session

logger = logging.getLogger(__name__)

HEAD_LIMIT = 16 * 1024
MAX_HEADERS = 100
CHUNK = 64 * 1024
WATCHDOG_STEP = 1.0
# After an error answer, wait this long (at most) for the client to finish sending before
# closing, so that its unread bytes never turn our answer into a connection reset.
LINGER_SECONDS = 2.0
LINGER_BYTES = 256 * 1024
SEND_TIMEOUT = 10.0

FORWARD_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
HOP_BY_HOP = {
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
}
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_AUTHORITY = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^:\[\]/@\s]+):([0-9]{1,5})")
_STATUS = re.compile(rb"HTTP/1\.[01] ([0-9]{3})")


class ChannelLike(Protocol):
    """What the proxy needs of a tunnel channel (``sessions_app.runtime.tunnel.Channel``)."""

    def recv(self, max_bytes: int = 65536, timeout: float | None = None) -> bytes: ...

    def send(self, data: bytes, timeout: float | None = None) -> None: ...

    def shutdown_write(self) -> None: ...

    def close(self) -> None: ...


class _HttpError(Exception):
    """Answer the client ``status`` and end the connection, recording ``outcome``."""

    def __init__(self, status: int, phrase: str, reason: str, *, outcome: str, detail: str = "") -> None:
        super().__init__(reason)
        self.status = status
        self.phrase = phrase
        self.reason = reason
        self.outcome = outcome
        self.detail = detail or reason


def _bad_request(reason: str) -> _HttpError:
    return _HttpError(400, "Bad Request", reason, outcome=EgressConnection.Outcome.BAD_REQUEST)


class _ClientGone(Exception):
    """The sandbox side closed before sending a request: nothing to answer or record."""


# --- caps and the idle watchdog ---------------------------------------------------------------


class _Proxied:
    """One connection being served: what it moved, when it last moved, how to end it early."""

    def __init__(self, channel: ChannelLike) -> None:
        self.channel = channel
        self.upstream: socket.socket | None = None
        self.bytes_up = 0
        self.bytes_down = 0
        self.last_moved = time.monotonic()
        self.pumping = False
        self.outcome: str | None = None  # set once by the first abort
        self._lock = threading.Lock()

    def moved(self, n: int, *, up: bool) -> None:
        with self._lock:
            if up:
                self.bytes_up += n
            else:
                self.bytes_down += n
            self.last_moved = time.monotonic()
            total = self.bytes_up + self.bytes_down
        EGRESS_BYTES.labels(direction="up" if up else "down").inc(n)
        cap = settings.VIBECODE_EGRESS_MAX_MB_PER_CONNECTION * 2**20
        if cap and total > cap:
            self.abort(EgressConnection.Outcome.BYTE_CAP)

    def abort(self, outcome: str) -> None:
        """End both sides now (wakes any thread blocked on them); the first outcome wins."""
        with self._lock:
            if self.outcome is None:
                self.outcome = outcome
        try:
            self.channel.close()
        except Exception:  # already gone
            logger.debug("egress: closing a channel failed", exc_info=True)
        upstream = self.upstream
        if upstream is not None:
            try:
                upstream.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@dataclass
class _Registry:
    lock: threading.Lock = field(default_factory=threading.Lock)
    per_workspace: Counter[str] = field(default_factory=Counter)
    active: set[_Proxied] = field(default_factory=set)
    watchdog: threading.Thread | None = None

    def claim(self, session_public_id: str, proxied: _Proxied) -> bool:
        with self.lock:
            if len(self.active) >= settings.VIBECODE_EGRESS_MAX_CONNECTIONS:
                return False
            if (
                self.per_workspace[session_public_id]
                >= settings.VIBECODE_EGRESS_MAX_CONNECTIONS_PER_WORKSPACE
            ):
                return False
            self.per_workspace[session_public_id] += 1
            self.active.add(proxied)
            if self.watchdog is None or not self.watchdog.is_alive():
                self.watchdog = threading.Thread(target=self._watch, name="egress-watchdog", daemon=True)
                self.watchdog.start()
        EGRESS_OPEN.inc()
        return True

    def release(self, session_public_id: str, proxied: _Proxied) -> None:
        with self.lock:
            self.active.discard(proxied)
            self.per_workspace[session_public_id] -= 1
            if self.per_workspace[session_public_id] <= 0:
                del self.per_workspace[session_public_id]
        EGRESS_OPEN.dec()

    def open_count(self, session_public_id: str | None = None) -> int:
        with self.lock:
            if session_public_id is None:
                return len(self.active)
            return self.per_workspace[session_public_id]

    def _watch(self) -> None:
        while True:
            time.sleep(WATCHDOG_STEP)
            limit = settings.VIBECODE_EGRESS_IDLE_TIMEOUT_SECONDS
            now = time.monotonic()
            with self.lock:
                idle = [p for p in self.active if p.pumping and now - p.last_moved > limit]
            for proxied in idle:
                proxied.abort(EgressConnection.Outcome.IDLE_TIMEOUT)


_registry = _Registry()


def egress_open_connections(*, session_public_id: str | None = None) -> int:
    """Egress connections open in this process (of one workspace, given its public id)."""
    return _registry.open_count(session_public_id)


# --- HTTP ---------------------------------------------------------------------------------------


@dataclass
class _Request:
    method: str
    target: str
    headers: list[tuple[str, str]]


def _read_head(channel: ChannelLike, *, deadline: float) -> tuple[bytes, bytes]:
    """The request head (up to and including the blank line) and whatever followed it."""
    buffer = bytearray()
    while True:
        end = buffer.find(b"\r\n\r\n")
        if end >= 0:
            if end + 4 > HEAD_LIMIT:
                break
            return bytes(buffer[: end + 4]), bytes(buffer[end + 4 :])
        if len(buffer) > HEAD_LIMIT:
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _HttpError(
                408, "Request Timeout", "request head too slow", outcome=EgressConnection.Outcome.HEAD_TIMEOUT
            )
        try:
            data = channel.recv(CHUNK, timeout=remaining)
        except TimeoutError:
            continue  # the deadline check above answers
        except Exception:  # the tunnel went away before a request came: nothing to answer
            raise _ClientGone() from None
        if not data:
            if buffer:
                raise _bad_request("incomplete request head")
            raise _ClientGone()
        buffer += data
    raise _HttpError(
        431,
        "Request Header Fields Too Large",
        "request head too large",
        outcome=EgressConnection.Outcome.BAD_REQUEST,
        detail=f"The request head is over {HEAD_LIMIT} bytes.",
    )


def _parse_head(head: bytes) -> _Request:
    try:
        text = head[:-4].decode("ascii")
    except UnicodeDecodeError:
        raise _bad_request("request head is not ASCII") from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or parts[2] not in {"HTTP/1.0", "HTTP/1.1"}:
        raise _bad_request("malformed request line")
    if len(lines) - 1 > MAX_HEADERS:
        raise _bad_request("too many header fields")
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN.fullmatch(name) or any(ord(c) < 32 and c != "\t" for c in value):
            raise _bad_request("malformed header field")
        headers.append((name, value.strip()))
    return _Request(method=parts[0], target=parts[1], headers=headers)


def _header(request: _Request, name: str) -> list[str]:
    return [value for key, value in request.headers if key.lower() == name]


def _connect_target(target: str) -> tuple[str, int]:
    match = _AUTHORITY.fullmatch(target)
    if match is None:
        raise _bad_request("CONNECT needs host:port")
    port = int(match.group(2))
    if not 0 < port < 65536:
        raise _bad_request("CONNECT needs host:port")
    return match.group(1), port


def _answer(channel: ChannelLike, error: _HttpError) -> None:
    """Send an error answer and close gently (see ``LINGER_SECONDS``)."""
    body = f"VibeCode egress proxy: {error.reason}. {error.detail}\n".encode()
    head = (
        f"HTTP/1.1 {error.status} {error.phrase} ({error.reason})\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Proxy-Agent: VibeCode\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    try:
        channel.send(head + body, timeout=SEND_TIMEOUT)
        channel.shutdown_write()
        deadline = time.monotonic() + LINGER_SECONDS
        drained = 0
        while drained < LINGER_BYTES and (remaining := deadline - time.monotonic()) > 0:
            data = channel.recv(CHUNK, timeout=remaining)
            if not data:
                break
            drained += len(data)
    except Exception:  # the client is gone or slow: nothing more to tell it
        return


def _open_upstream(destination: Destination) -> tuple[socket.socket, str]:
    """A connection to one of the checked addresses (never a fresh lookup)."""
    deadline = time.monotonic() + settings.VIBECODE_EGRESS_CONNECT_TIMEOUT_SECONDS
    timed_out = False
    last_error = "no address"
    for address in destination.addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        try:
            sock = socket.create_connection((str(address), destination.port), timeout=remaining)
        except TimeoutError:
            timed_out = True
            last_error = f"{address}: timed out"
            continue
        except OSError as exc:
            last_error = f"{address}: {exc.strerror or exc}"
            continue
        sock.settimeout(None)
        return sock, str(address)
    if timed_out:
        raise _HttpError(
            504,
            "Gateway Timeout",
            "upstream timed out",
            outcome=EgressConnection.Outcome.UPSTREAM_TIMEOUT,
            detail=f"{destination.host}:{destination.port} did not answer in time.",
        )
    raise _HttpError(
        502,
        "Bad Gateway",
        "upstream unreachable",
        outcome=EgressConnection.Outcome.UPSTREAM_ERROR,
        detail=f"{destination.host}:{destination.port}: {last_error}.",
    )


def _forward_head(request: _Request, *, authority: str, path: str) -> bytes:
    listed = {token.strip().lower() for value in _header(request, "connection") for token in value.split(",")}
    kept = [
        f"{name}: {value}\r\n"
        for name, value in request.headers
        if name.lower() not in HOP_BY_HOP and name.lower() not in listed
    ]
    return (
        f"{request.method} {path} HTTP/1.1\r\nHost: {authority}\r\n{''.join(kept)}Connection: close\r\n\r\n"
    ).encode("latin-1")


# --- pumping ------------------------------------------------------------------------------------


def _upload(proxied: _Proxied, leftover: bytes, limit: int | None) -> None:
    """Sandbox to upstream, until the sandbox finishes writing (or ``limit`` bytes)."""
    upstream = proxied.upstream
    assert upstream is not None
    sent = 0
    try:
        pending = leftover
        while True:
            if limit is not None:
                pending = pending[: limit - sent]
            if pending:
                upstream.sendall(pending)
                sent += len(pending)
                proxied.moved(len(pending), up=True)
            if limit is not None and sent >= limit:
                return
            pending = proxied.channel.recv(CHUNK)
            if not pending:
                upstream.shutdown(socket.SHUT_WR)
                return
    except OSError:
        proxied.abort(EgressConnection.Outcome.UPSTREAM_ERROR)
    except Exception:  # the channel: the sandbox side or the tunnel went away
        proxied.abort(EgressConnection.Outcome.LOST)


def _download(proxied: _Proxied, on_first: Callable[[bytes], None] | None = None) -> None:
    """Upstream to sandbox, until the upstream finishes writing."""
    upstream = proxied.upstream
    assert upstream is not None
    try:
        while True:
            data = upstream.recv(CHUNK)
            if not data:
                proxied.channel.shutdown_write()
                return
            if on_first is not None:
                on_first(data)
                on_first = None
            proxied.channel.send(data)
            proxied.moved(len(data), up=False)
    except OSError:
        proxied.abort(EgressConnection.Outcome.UPSTREAM_ERROR)
    except Exception:
        proxied.abort(EgressConnection.Outcome.LOST)


def _pump(
    proxied: _Proxied,
    *,
    leftover: bytes,
    upload_limit: int | None,
    on_first: Callable[[bytes], None] | None = None,
) -> None:
    proxied.last_moved = time.monotonic()
    proxied.pumping = True
    uploader = threading.Thread(
        target=_upload, args=(proxied, leftover, upload_limit), name="egress-up", daemon=True
    )
    uploader.start()
    _download(proxied, on_first)
    uploader.join()


# --- the service --------------------------------------------------------------------------------


@dataclass
class _Record:
    method: str = ""
    host: str = ""
    port: int | None = None
    address: str | None = None
    status_code: int | None = None
    reason: str = ""


def _serve(proxied: _Proxied, record: _Record) -> str:
    """Serve one connection; returns the outcome. Raises ``_HttpError`` and ``_ClientGone``."""
    channel = proxied.channel
    head, leftover = _read_head(
        channel, deadline=time.monotonic() + settings.VIBECODE_EGRESS_HEAD_TIMEOUT_SECONDS
    )
    request = _parse_head(head)
    record.method = request.method[:16]
    if request.method == "CONNECT":
        host, port = _connect_target(request.target)
        path = ""
    else:
        parts = urlsplit(request.target)
        if parts.scheme.lower() == "https":
            raise _bad_request("https goes through CONNECT")
        if parts.scheme.lower() != "http" or not parts.hostname or "@" in parts.netloc:
            raise _bad_request("a proxy request needs an absolute http:// URL")
        if request.method not in FORWARD_METHODS:
            raise _bad_request(f"method {request.method} is not forwarded")
        try:
            port = parts.port or 80
        except ValueError:
            raise _bad_request("bad port in the URL") from None
        host = parts.hostname
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    record.host, record.port = host[:255], port

    try:
        destination = egress_destination(host=host, port=port)
    except EgressRefused as exc:
        raise _HttpError(403, "Forbidden", exc.reason, outcome=exc.outcome, detail=exc.detail) from None
    except EgressUnresolvable as exc:
        raise _HttpError(
            502,
            "Bad Gateway",
            "host not found",
            outcome=EgressConnection.Outcome.UPSTREAM_ERROR,
            detail=exc.detail,
        ) from None
    record.host = destination.host

    upload_limit: int | None = None
    if request.method != "CONNECT":
        if _header(request, "transfer-encoding"):
            raise _HttpError(
                501,
                "Not Implemented",
                "chunked request bodies are not supported",
                outcome=EgressConnection.Outcome.BAD_REQUEST,
            )
        lengths = _header(request, "content-length")
        if len(lengths) > 1 or (lengths and not lengths[0].isdigit()):
            raise _bad_request("bad Content-Length")
        upload_limit = int(lengths[0]) if lengths else 0

    upstream, record.address = _open_upstream(destination)
    proxied.upstream = upstream
    if request.method == "CONNECT":
        record.status_code = 200
        channel.send(
            b"HTTP/1.1 200 Connection established\r\nProxy-Agent: VibeCode\r\n\r\n", timeout=SEND_TIMEOUT
        )
        _pump(proxied, leftover=leftover, upload_limit=None)
    else:
        name = f"[{destination.host}]" if ":" in destination.host else destination.host
        authority = name if port == 80 else f"{name}:{port}"
        upstream.sendall(_forward_head(request, authority=authority, path=path))

        def note_status(data: bytes) -> None:
            match = _STATUS.match(data)
            record.status_code = int(match.group(1)) if match else None

        _pump(proxied, leftover=leftover, upload_limit=upload_limit, on_first=note_status)
    return proxied.outcome or EgressConnection.Outcome.OK


def egress_serve(*, session_public_id: str, channel: ChannelLike) -> None:
    """Serve one connection a sandbox made to its egress port, then close the channel.

    Blocks until the connection ends (runs on a thread of its own, as the tunnel's accept
    handlers do). Never raises: every failure becomes an HTTP answer to the sandbox, a metric
    and, once a request was read, an :class:`EgressConnection` row."""
    started, started_at = time.monotonic(), timezone.now()
    proxied = _Proxied(channel)
    record = _Record()
    if not _registry.claim(session_public_id, proxied):
        EGRESS_CONNECTIONS.labels(outcome="busy").inc()
        _answer(
            channel,
            _HttpError(
                503,
                "Service Unavailable",
                "too many connections",
                outcome="busy",
                detail="This workspace (or this server) has too many egress connections open; try again.",
            ),
        )
        channel.close()
        return
    outcome: str | None
    try:
        try:
            outcome = _serve(proxied, record)
        except _HttpError as error:
            outcome, record.status_code, record.reason = error.outcome, error.status, error.reason
            _answer(channel, error)
        except _ClientGone:
            outcome = None
        except (DomainError, OSError) as exc:  # the channel (tunnel) failed mid-way
            logger.info("egress: session %s: connection lost: %s", session_public_id, exc)
            outcome = proxied.outcome or EgressConnection.Outcome.LOST
        except Exception:  # a bug: logged, never the caller's problem
            logger.exception("egress: session %s: the proxy failed", session_public_id)
            outcome = proxied.outcome or EgressConnection.Outcome.LOST
    finally:
        _registry.release(session_public_id, proxied)
        try:
            channel.close()
        finally:
            if proxied.upstream is not None:
                proxied.upstream.close()
    if outcome is None:
        EGRESS_CONNECTIONS.labels(outcome="empty").inc()
        return
    EGRESS_CONNECTIONS.labels(outcome=outcome).inc()
    duration = time.monotonic() - started
    logger.info(
        "egress session=%s %s %s:%s %s status=%s up=%d down=%d %.1fs",
        session_public_id,
        record.method,
        record.host,
        record.port,
        outcome,
        record.status_code,
        proxied.bytes_up,
        proxied.bytes_down,
        duration,
    )
    try:
        EgressConnection.objects.create(
            session_id=Session.objects.filter(public_id=session_public_id)
            .values_list("pk", flat=True)
            .first(),
            session_public_id=session_public_id[:16],
            method=record.method,
            host=record.host,
            port=record.port,
            address=record.address,
            outcome=outcome,
            status_code=record.status_code,
            reason=record.reason[:300],
            bytes_up=proxied.bytes_up,
            bytes_down=proxied.bytes_down,
            started_at=started_at,
            duration=timedelta(seconds=duration),
        )
    except DatabaseError:
        logger.warning("egress: session %s: the audit row was not written", session_public_id, exc_info=True)


def egress_accept(*, session_public_id: str, channel: ChannelLike) -> None:
    """The tunnel's accept handler: :func:`egress_serve` on the tunnel's thread, which then
    gives back the database connection that thread opened."""
    try:
        egress_serve(session_public_id=session_public_id, channel=channel)
    finally:
        connection.close()


def egress_tunnel_handler(session_public_id: str, channel: ChannelLike) -> None:
    """What egress_app registers with ``sessions_app.runtime.tunnel.register_accept_handler``."""
    egress_accept(session_public_id=session_public_id, channel=channel)


def egress_audit_prune(*, days: int | None = None, dry_run: bool = False, batch: int = 10_000) -> int:
    """Delete (at most ``batch``) egress audit rows older than ``days`` (default
    ``VIBECODE_EGRESS_AUDIT_DAYS``); returns how many were (or, dry, would be) deleted."""
    cutoff = timezone.now() - timedelta(days=days or settings.VIBECODE_EGRESS_AUDIT_DAYS)
    old = EgressConnection.objects.filter(started_at__lt=cutoff)
    if dry_run:
        return min(old.count(), batch)
    pks = list(old.order_by("started_at").values_list("pk", flat=True)[:batch])
    if not pks:
        return 0
    deleted, _ = EgressConnection.objects.filter(pk__in=pks).delete()
    return deleted
