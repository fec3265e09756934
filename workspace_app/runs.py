"""Streaming runs: a program whose output streams to the IDE as it is produced, with stdin, Stop,
and reattach after a page reload.

The run belongs to the session's helper in the sandbox (``run_*`` ops in ``sandbox/agent.py``),
not to any request: the helper keeps its output in a bounded ring buffer, and every reader asks
for the bytes from an offset. So a reload, a second tab or a dropped connection reads on from
where it was, and a reader that stops reading costs nothing. A run ends by itself, by Stop, or
at ``VIBECODE_RUN_TIMEOUT_SECONDS``; then all its processes are killed.

Server-sent events are made here from those reads (see :func:`run_events`); each event's id is
the byte offset to resume from, which is what ``EventSource`` sends back as ``Last-Event-ID``.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from typing import Any

from django.conf import settings

from core_app.errors import DomainError
from sessions_app.models import Session
from sessions_app.runtime.helper import HelperClient, HelperGone, Reply
from sessions_app.services import session_tunnel_ensure
from sessions_app.specs import session_ref
from workspace_app.services import (
    RUNNERS,
    InvalidCommand,
    UnsupportedFileType,
    _agent,
    _look,
    _path,
    helper_by_ref,
)

RUN_ID = re.compile(r"[0-9a-f]{16}")
# A comment line this often while a run is quiet (one helper read waits up to about a second),
# so that proxies keep the connection open.
KEEPALIVE_READS = 15
# Compiles a C file to a temporary binary, runs it line-buffered, and removes it.
C_SCRIPT = (
    "bin=$(mktemp /tmp/vibecode-run-XXXXXX) || exit 126; "
    'gcc -O2 -Wall -o "$bin" "$1" -lm || { rm -f "$bin"; exit 1; }; shift; '
    'if command -v stdbuf >/dev/null; then stdbuf -oL -eL "$bin" "$@"; else "$bin" "$@"; fi; '
    'code=$?; rm -f "$bin"; exit $code'
)


class RunNotFound(DomainError):
    status_code = 404
    code = "run_not_found"
    default_detail = "No such run: it ended long ago, or the workspace restarted."


def _run_id(raw: str) -> str:
    if not RUN_ID.fullmatch(raw or ""):
        raise RunNotFound()
    return raw


def run_argv(*, session: Session, path: str, args: list[str] | None = None) -> tuple[list[str], str]:
    """The command that runs ``path`` by its extension (a .c file is compiled first), and a label."""
    clean = _path(session, path, allow_root=False)
    name = clean.rsplit("/", 1)[-1]
    suffix = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
    runner = RUNNERS.get(suffix)
    if runner is None:
        supported = ", ".join(sorted(RUNNERS))
        raise UnsupportedFileType(f"VibeCode can run {supported} files; {clean} is not one of them.")
    extra = [str(arg) for arg in (args or [])]
    if runner == "gcc":
        return ["sh", "-c", C_SCRIPT, "vibecode-run", clean, *extra], clean
    return [runner, clean, *extra], clean


def run_start(
    *, session: Session, path: str | None = None, argv: list[str] | None = None, args: list[str] | None = None
) -> dict[str, Any]:
    """Start a run of a file (``path``, by its extension) or of ``argv`` (no shell) in
    /workspace. Returns the run's info (``run_id``...) at once; its output is read with
    :func:`run_read` or :func:`run_events`."""
    if path is not None:
        command, label = run_argv(session=session, path=path, args=args)
    else:
        if not argv or not all(isinstance(arg, str) and "\0" not in arg for arg in argv):
            raise InvalidCommand("argv must be a non-empty list of strings without NUL characters.")
        command, label = argv, " ".join(argv)[:300]
    if settings.VIBECODE_EGRESS != "off":
        session_tunnel_ensure(session=session, wait=True)  # a run may `pip install`
    request = {
        "argv": command,
        "label": label,
        "cwd": "/workspace",
        "timeout": float(settings.VIBECODE_RUN_TIMEOUT_SECONDS),
    }
    return _agent(session).call("run_start", request).result


def run_list(*, session: Session) -> list[dict[str, Any]]:
    """The session's runs this helper knows: those going and the last few finished, oldest first."""
    return list(_look(session, "run_list", {}).result.get("runs") or [])


def run_read(*, session: Session, run_id: str, offset: int = 0, wait: float = 0.0) -> Reply:
    """Output from byte ``offset`` (up to 256 KiB), waiting up to ``wait`` (at most 1) seconds
    for some; the result says ``next_offset``, ``dropped`` bytes and whether it ``finished``."""
    args = {"run_id": _run_id(run_id), "offset": max(int(offset), 0), "wait": wait}
    try:
        return _agent(session).call("run_read", args)
    except HelperGone:  # found dead just now: a fresh helper answers (it knows no runs: 404)
        return _agent(session).call("run_read", args)


def run_input(*, session: Session, run_id: str, text: str, eof: bool = False) -> dict[str, Any]:
    """Send ``text`` to the run's stdin (``eof``: then close it). Never blocks on a program that
    does not read: its full pipe answers 409 ``input_full``."""
    args = {"run_id": _run_id(run_id), "eof": eof}
    return _agent(session).call("run_input", args, payload=text.encode("utf-8", "surrogatepass")).result


def run_stop(*, session: Session, run_id: str) -> dict[str, Any]:
    """Kill the run and every process it started; answers with how it ended. Ended already: its info."""
    return _look(session, "run_stop", {"run_id": _run_id(run_id)}).result


def _event(name: str, data: dict[str, Any], *, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    keys = ("exit_code", "timed_out", "stopped", "oom_killed", "duration_ms", "max_rss_kb", "label")
    return {key: result.get(key) for key in keys}


def run_events(*, session: Session, run_id: str, offset: int = 0) -> Iterator[bytes]:
    """The run's output from ``offset`` as server-sent events, until it ends:

    * ``output`` ``{text}``: output decoded as UTF-8 (invalid bytes as U+FFFD); its id is the
      byte offset to resume from;
    * ``dropped`` ``{bytes}``: output that fell out of the helper's buffer before it was read;
    * ``end`` ``{exit_code, timed_out, stopped, oom_killed, duration_ms, max_rss_kb}``, then the
      stream closes;
    * ``lost`` ``{detail}``: the run can no longer be read (the helper restarted, the session
      stopped), then the stream closes.

    An unknown run raises ``RunNotFound`` before any byte is produced. The stream holds one read
    (at most 256 KiB) at a time, however fast the program writes and however slow the reader.
    """
    first = run_read(session=session, run_id=run_id, offset=offset)
    # Resolved now: the stream itself touches no database.
    ref = session_ref(session)

    def helper() -> HelperClient:
        return helper_by_ref(ref)

    def body() -> Iterator[bytes]:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        reply = first
        position = max(int(offset), 0)
        quiet = 0
        yield b"retry: 1000\n\n"
        while True:
            result, data = reply.result, reply.data
            position = int(result.get("next_offset", position))
            if result.get("dropped"):
                decoder.reset()
                yield _event("dropped", {"bytes": int(result["dropped"])})
            if data:
                quiet = 0
                text = decoder.decode(data)
                held = len(decoder.getstate()[0])
                if text:
                    yield _event("output", {"text": text}, event_id=position - held)
            if result.get("finished"):
                tail = decoder.decode(b"", final=True)
                if tail:
                    yield _event("output", {"text": tail}, event_id=position)
                yield _event("end", _summary(result), event_id=position)
                return
            if not data:
                quiet += 1
                if quiet % KEEPALIVE_READS == 0:
                    yield b": keepalive\n\n"
            args = {"run_id": run_id, "offset": position, "wait": 1.0}
            try:
                try:
                    reply = helper().call("run_read", args)
                except HelperGone:  # found dead just now: ask the one that replaces it
                    reply = helper().call("run_read", args)
            except DomainError as exc:
                yield _event("lost", {"detail": str(exc), "code": getattr(exc, "code", "error")})
                return

    return body()
