"""Terminals: each ``terminal_id`` is a tmux session inside the sandbox, so a shell outlives the
WebSocket that shows it (a reload or a dropped network reattaches to the same screen)."""

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
from sessions_app.runtime.base import ExecResult, Tty
from sessions_app.runtime.errors import SandboxNotRunning
from sessions_app.services import session_tunnel_ensure
from sessions_app.specs import session_ref
from terminal_app import limits
from workspace_app.services import workspace_exec

logger = logging.getLogger(__name__)

TERMINAL_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
TMUX_PREFIX = "vc-"
CLIENT_ID = re.compile(r"^[0-9a-f]{8,32}$")


class InvalidTerminalId(DomainError):
    code = "invalid_terminal_id"
    default_detail = "A terminal id is 1 to 32 letters, digits, '-' or '_'."


class TooManyTerminals(DomainError):
    status_code = 429
    code = "too_many_terminals"
    default_detail = "Too many terminals are open. Close one (in any tab or browser) and try again."


@dataclass
class OpenTerminal:
    """A TTY attached to a terminal's tmux session, and the slot it holds in the user's limit."""

    session: Session
    terminal_id: str
    user_id: int
    client_id: str
    tty: Tty
    history: bytes = b""  # send before the TTY's output: see terminal_history


def tmux_name(terminal_id: str) -> str:
    if not TERMINAL_ID.match(terminal_id or ""):
        raise InvalidTerminalId()
    return TMUX_PREFIX + terminal_id


def _client_pid_file(client_id: str) -> str:
    if not CLIENT_ID.match(client_id):
        raise ValueError("a client id is 8 to 32 lowercase hex digits")
    return f"/tmp/vc-client-{client_id}.pid"


# What tmux may send to the outer terminal (xterm.js), so that xterm.js keeps the scrollback
# itself and the mouse wheel, the scrollbar and find work on its own buffer:
# - ``smcup@:rmcup@``: no alternate screen for the outer terminal, so lines that scroll off the
#   top go into xterm.js's scrollback instead of being thrown away;
# - ``indn@``: scroll with newlines at the bottom of the region (which xterm.js keeps), never
#   with ``CSI n S`` (which it does not).
TMUX_TERMINAL_OVERRIDES = "*:smcup@:rmcup@:indn@"
# tmux sets the outer terminal's title to this whenever it changes: the page learns from it, in
# order with the output, whether a full-screen program (vim, less, htop) has the pane's
# alternate screen. Its scrolling lands in xterm.js's scrollback too, so when it ends the page
# reattaches (which rebuilds the scrollback from tmux's history, where it never went).
TMUX_TITLE = "vibecode:#{?alternate_on,alt,main}"


def tmux_attach_argv(terminal_id: str, *, cols: int, rows: int, client_id: str) -> list[str]:
    """Attach to the terminal's tmux session, creating it (a login bash in /workspace) if new.

    tmux draws the screen on attach (which is how a reload gets its screen back; its history
    comes from :func:`terminal_history`), without the alternate screen
    (``TMUX_TERMINAL_OVERRIDES``, set before the client starts since tmux reads it then). The
    status bar is off (the IDE has its own tabs, and a full-width pane scrolls with newlines)
    and the scrollback is generous (10,000 lines, as xterm.js's). The shell first records its
    pid (which becomes the tmux client's) under ``client_id``, for :func:`terminal_detach`.
    """
    name = tmux_name(terminal_id)
    return [
        "sh", "-c", 'echo $$ > "$0"; exec "$@"', _client_pid_file(client_id),
        "tmux", "-u", "set-option", "-s", "terminal-overrides", TMUX_TERMINAL_OVERRIDES, ";",
        # Before new-session: a pane's history limit is fixed when the pane is made.
        "set-option", "-g", "history-limit", "10000", ";",
        "new-session", "-A", "-s", name, "-x", str(cols), "-y", str(rows), "-c", "/workspace",
        "bash", "-l", ";",
        "set-option", "-t", name, "status", "off", ";",
        "set-option", "-t", name, "set-titles", "on", ";",
        "set-option", "-t", name, "set-titles-string", TMUX_TITLE, ";",
        "set-option", "-s", "escape-time", "0", ";",
        "set-window-option", "-t", name, "aggressive-resize", "on",
    ]  # fmt: skip


def terminal_open(*, session: Session, user_id: int, terminal_id: str, cols: int, rows: int) -> OpenTerminal:
    """Attach a new TTY to the terminal ``terminal_id`` of a running session (creating its tmux
    session if new), taking one of the user's ``VIBECODE_MAX_TERMINALS_PER_USER`` slots.

    Raises ``TooManyTerminals`` when the user has them all, ``InvalidTerminalId``, and the
    runtime's ``DomainError`` (``SandboxNotRunning``...) when the TTY cannot be opened; the slot
    is given back then. Blocking: call it off the event loop.
    """
    tmux_name(terminal_id)
    if session.status != Session.Status.RUNNING:
        raise SandboxNotRunning(f"The session is {session.status}. Resume it to use the terminal.")
    # Before the TTY: tmux draws the screen as it attaches, and the history goes above it.
    client_id = secrets.token_hex(8)
    history = terminal_history(session=session, terminal_id=terminal_id, rows=rows)
    if not limits.slot_acquire(user_id=user_id, slot_id=client_id):
        raise TooManyTerminals(
            f"You have {settings.VIBECODE_MAX_TERMINALS_PER_USER} terminals open, the most allowed. "
            "Close one (in any tab or browser) and try again."
        )
    try:
        tty = get_runtime().open_tty(
            session_ref(session),
            tmux_attach_argv(terminal_id, cols=cols, rows=rows, client_id=client_id),
            cols=cols,
            rows=rows,
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
        session=session,
        terminal_id=terminal_id,
        user_id=user_id,
        client_id=client_id,
        tty=tty,
        history=history,
    )


# The history of a terminal's pane as tmux has it (up to its 10,000 lines), with colours.
HISTORY_MAX_BYTES = 4 * 1024 * 1024
# ``=name:`` is an exact target: ``vc-1`` never matches ``vc-10``.
_HISTORY_SCRIPT = (
    'n=$(tmux display-message -p -t "=$0:" "#{history_size}" 2>/dev/null); '
    '[ "${n:-0}" -gt 0 ] || exit 0; '
    'exec tmux capture-pane -p -e -J -S - -E -1 -t "=$0:"'
)


def terminal_history(*, session: Session, terminal_id: str, rows: int) -> bytes:
    """The lines above the screen of a terminal's pane, as terminal output for a new xterm.js:
    with its colours, then ``rows - 1`` newlines that push them all into the scrollback (tmux
    then clears the screen and draws it). ``b""`` for a new terminal, or when tmux cannot say.

    Every attach sends it first, so a reload, a reconnect or a resync has the whole scrollback:
    tmux forwards a burst of more than a screen of output as a redraw, so some lines of such a
    burst reach xterm.js only this way. It cannot come through the TTY itself: tmux discards
    the output still queued on its terminal when it starts.
    """
    name = tmux_name(terminal_id)
    try:
        argv = ["sh", "-c", _HISTORY_SCRIPT, name]
        result = _quiet_exec(session=session, argv=argv, limit=HISTORY_MAX_BYTES)
    except DomainError as exc:
        logger.info("no history for terminal %s of session %s: %s", terminal_id, session.public_id, exc)
        return b""
    text = result.stdout
    if result.exit_code != 0 or not text.strip():
        return b""
    if result.truncated:  # the oldest lines are kept: end at a whole line
        text = text[: text.rfind(b"\n") + 1]
    return text.replace(b"\n", b"\r\n") + b"\r\n" * (rows - 1)


def terminal_heartbeat(*, terminal: OpenTerminal) -> None:
    """Renew the terminal's slot; call every ``limits.SLOT_HEARTBEAT_SECONDS`` while it is open."""
    limits.slot_refresh(user_id=terminal.user_id, slot_id=terminal.client_id)


def terminal_resize(*, terminal: OpenTerminal, cols: int, rows: int) -> None:
    """A new window size for the terminal's TTY (tmux and the shell get SIGWINCH)."""
    terminal.tty.resize(cols=cols, rows=rows)


def terminal_exit_code(*, terminal: OpenTerminal) -> int | None:
    """The tmux client's exit code once its TTY has ended, else None."""
    return terminal.tty.exit_code()


def terminal_detach(*, terminal: OpenTerminal) -> None:
    """Close the TTY, give its slot back and hang up the tmux client it was showing; the shell
    and its tmux session stay.

    Docker does not end a TTY exec when the connection to it closes (moby#9098), so without the
    hangup every reload or dropped network would leave a tmux client and an exec behind in the
    sandbox, up to its pids limit. Only a process named ``tmux: client`` gets the hangup, so a
    pid recycled by another program is never hit. The hangup is not user activity: it neither
    refreshes the session's idle clock nor counts as an exec. Raises a ``DomainError`` when the
    sandbox is not running (its clients are gone already); the TTY and slot are released anyway.
    """
    terminal.tty.close()
    OPEN_TERMINALS.dec()
    limits.slot_release(user_id=terminal.user_id, slot_id=terminal.client_id)
    script = (
        # The pid file appears within milliseconds of the exec starting; wait a little for it.
        'for _ in 1 2 3 4 5 6 7 8 9 10; do [ -s "$0" ] && break; sleep 0.05; done; '
        'pid=$(cat "$0" 2>/dev/null); rm -f "$0"; '
        'case "$(cat "/proc/${pid:-0}/comm" 2>/dev/null)" in "tmux: client"*) kill -HUP "$pid";; esac'
    )
    _quiet_exec(session=terminal.session, argv=["sh", "-c", script, _client_pid_file(terminal.client_id)])


def _quiet_exec(
    *, session: Session, argv: list[str], timeout: int = 10, limit: int = 64 * 1024
) -> ExecResult:
    """Housekeeping in the sandbox through its persistent helper (a few ms, where a fresh
    ``docker exec`` costs ~60), without what ``workspace_exec`` adds for a user's command: no
    activity write, no exec metrics."""
    if session.status != Session.Status.RUNNING:
        raise SandboxNotRunning(f"The session is {session.status}.")
    request = {
        "argv": argv,
        "cwd": "/workspace",
        "timeout": timeout,
        "limit": limit,
        "stdin": "",
    }
    reply = get_runtime().helper(session_ref(session)).call("exec", request, timeout=timeout + 30)
    return ExecResult.from_helper(reply.result)


def terminal_list(*, session: Session) -> list[dict[str, Any]]:
    result = workspace_exec(
        session=session,
        argv=["tmux", "list-sessions", "-F", "#{session_name}\t#{session_created}\t#{session_attached}"],
        timeout=10,
    )
    terminals = []
    for line in result.stdout.decode(errors="replace").splitlines():
        name, created, attached = [*line.split("\t"), "", "", ""][:3]
        # Users can make tmux sessions of their own: list only ours, and only well-formed lines.
        if name.startswith(TMUX_PREFIX) and TERMINAL_ID.match(name[len(TMUX_PREFIX) :]) and created.isdigit():
            terminals.append(
                {
                    "terminal_id": name[len(TMUX_PREFIX) :],
                    "created": int(created or 0),
                    "attached": int(attached or 0),
                }
            )
    return terminals


def terminal_close(*, session: Session, terminal_id: str) -> bool:
    """End a terminal's shell and everything it runs. False when there was no such terminal."""
    result = workspace_exec(
        session=session, argv=["tmux", "kill-session", "-t", tmux_name(terminal_id)], timeout=10
    )
    return result.exit_code == 0
