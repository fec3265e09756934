"""Terminals: each ``terminal_id`` is a PTY owned by the sandbox's PTY host (the helper program's
``pty-host`` mode), so a shell outlives the WebSocket that shows it: a reload or a dropped network
attaches again and gets the terminal's recent output replayed, which rebuilds xterm.js's screen
and scrollback. Output passes through as the programs wrote it (no multiplexer redraws it).
``docs/terminal-protocol.md`` has the whole path."""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from core_app.errors import DomainError
from core_app.metrics import OPEN_TERMINALS
from sessions_app.models import Session
from sessions_app.runtime import get_runtime
from sessions_app.runtime.base import TerminalStream
from sessions_app.runtime.errors import SandboxNotRunning
from sessions_app.runtime.pty import close_frame, input_frame, resize_frame
from sessions_app.services import session_tunnel_ensure
from sessions_app.specs import session_ref
from terminal_app import limits

logger = logging.getLogger(__name__)

TERMINAL_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


class InvalidTerminalId(DomainError):
    code = "invalid_terminal_id"
    default_detail = "A terminal id is 1 to 32 letters, digits, '-' or '_'."


class TooManyTerminals(DomainError):
    status_code = 429
    code = "too_many_terminals"
    default_detail = "Too many terminals are open. Close one (in any tab or browser) and try again."


@dataclass
class OpenTerminal:
    """An attach to a terminal in the sandbox, and the slot it holds in the user's limit."""

    session: Session
    terminal_id: str
    user_id: int
    client_id: str
    stream: TerminalStream


def terminal_id_check(terminal_id: str) -> str:
    if not TERMINAL_ID.match(terminal_id or ""):
        raise InvalidTerminalId()
    return terminal_id


def terminal_open(*, session: Session, user_id: int, terminal_id: str, cols: int, rows: int) -> OpenTerminal:
    """Attach to the terminal ``terminal_id`` of a running session (the sandbox's PTY host starts
    it, a login bash in /workspace, if new), taking one of the user's
    ``VIBECODE_MAX_TERMINALS_PER_USER`` slots. The attach's output starts with the terminal's
    replay (its last MiB of output).

    Raises ``TooManyTerminals`` when the user has them all, ``InvalidTerminalId``, and the
    runtime's ``DomainError`` (``SandboxNotRunning``...) when the attach cannot be opened; the
    slot is given back then. Blocking: call it off the event loop.
    """
    terminal_id_check(terminal_id)
    if session.status != Session.Status.RUNNING:
        raise SandboxNotRunning(f"The session is {session.status}. Resume it to use the terminal.")
    client_id = secrets.token_hex(8)
    if not limits.slot_acquire(user_id=user_id, slot_id=client_id):
        raise TooManyTerminals(
            f"You have {settings.VIBECODE_MAX_TERMINALS_PER_USER} terminals open, the most allowed. "
            "Close one (in any tab or browser) and try again."
        )
    try:
        stream = get_runtime().open_terminal(
            session_ref(session), terminal_id=terminal_id, cols=cols, rows=rows
        )
    except BaseException:
        limits.slot_release(user_id=user_id, slot_id=client_id)
        raise
    OPEN_TERMINALS.inc()
    # Package egress (pip, npm, git) goes through the session's tunnel: have it up by the time
    # the user types.
    if settings.VIBECODE_EGRESS != "off":
        session_tunnel_ensure(session=session)
    return OpenTerminal(
        session=session, terminal_id=terminal_id, user_id=user_id, client_id=client_id, stream=stream
    )


def terminal_heartbeat(*, terminal: OpenTerminal) -> None:
    """Renew the terminal's slot; call every ``limits.SLOT_HEARTBEAT_SECONDS`` while it is open."""
    limits.slot_refresh(user_id=terminal.user_id, slot_id=terminal.client_id)


def terminal_detach(*, terminal: OpenTerminal) -> None:
    """Close the attach and give its slot back; the terminal, its shell and what it runs stay.

    The attach runs without a TTY, so closing its stream ends its stdin and it exits by itself:
    nothing is left behind in the sandbox, and nothing else needs to run there."""
    terminal.stream.close()
    OPEN_TERMINALS.dec()
    limits.slot_release(user_id=terminal.user_id, slot_id=terminal.client_id)


# What the consumer writes to an attach's socket (the event loop writes it; nothing blocks).


def terminal_input_bytes(data: bytes) -> bytes:
    """Keystrokes for the terminal."""
    return input_frame(data)


def terminal_resize_bytes(*, cols: int, rows: int) -> bytes:
    """A new size: the PTY host applies it at once and the programs get SIGWINCH. With several
    attaches to one terminal, the last size sent wins."""
    return resize_frame(cols=cols, rows=rows)


def terminal_close_bytes() -> bytes:
    """End the terminal: its shell and everything it runs get a hangup (SIGKILL half a second
    later), and every attach gets its exit."""
    return close_frame()


def _helper_call(*, session: Session, op: str, args: dict[str, Any]) -> dict[str, Any]:
    """Ask the sandbox's helper, which asks the PTY host (never starting one)."""
    if session.status != Session.Status.RUNNING:
        raise SandboxNotRunning(f"The session is {session.status}.")
    result: dict[str, Any] = get_runtime().helper(session_ref(session)).call(op, args, timeout=30).result
    return result


def terminal_list(*, session: Session) -> list[dict[str, Any]]:
    """The session's terminals: ``terminal_id``, ``created`` (a Unix time) and ``attached`` (how
    many attaches show it now). Empty when the sandbox has no PTY host yet."""
    terminals = []
    for item in _helper_call(session=session, op="pty_list", args={}).get("terminals", []):
        # The host runs as the sandbox user, who can answer in its place: keep well-formed rows.
        if not isinstance(item, dict) or not TERMINAL_ID.match(str(item.get("terminal_id", ""))):
            continue
        created, attached = item.get("created"), item.get("attached")
        terminals.append(
            {
                "terminal_id": str(item["terminal_id"]),
                "created": created if isinstance(created, int) else 0,
                "attached": attached if isinstance(attached, int) else 0,
            }
        )
    return terminals


def terminal_close(*, session: Session, terminal_id: str) -> bool:
    """End a terminal's shell and everything it runs. False when there was no such terminal."""
    terminal_id_check(terminal_id)
    return bool(_helper_call(session=session, op="pty_close", args={"id": terminal_id}).get("closed"))
