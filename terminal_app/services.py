"""Terminals: each ``terminal_id`` is a tmux session inside the sandbox, so a shell outlives the
WebSocket that shows it (a reload or a dropped network reattaches to the same screen)."""

from __future__ import annotations

import re
from typing import Any

from core_app.errors import DomainError
from sessions_app.models import Session
from workspace_app.services import workspace_exec

TERMINAL_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
TMUX_PREFIX = "vc-"
CLIENT_ID = re.compile(r"^[0-9a-f]{8,32}$")


class InvalidTerminalId(DomainError):
    code = "invalid_terminal_id"
    default_detail = "A terminal id is 1 to 32 letters, digits, '-' or '_'."


def tmux_name(terminal_id: str) -> str:
    if not TERMINAL_ID.match(terminal_id or ""):
        raise InvalidTerminalId()
    return TMUX_PREFIX + terminal_id


def _client_pid_file(client_id: str) -> str:
    if not CLIENT_ID.match(client_id):
        raise ValueError("a client id is 8 to 32 lowercase hex digits")
    return f"/tmp/vc-client-{client_id}.pid"


def tmux_attach_argv(terminal_id: str, *, cols: int, rows: int, client_id: str) -> list[str]:
    """Attach to the terminal's tmux session, creating it (a login bash in /workspace) if new.

    tmux draws the whole screen on attach, which is how a reload gets its screen back. The
    status bar is off (the IDE has its own tabs) and the scrollback is generous. The tmux client
    first records its pid under ``client_id``, for :func:`terminal_detach`.
    """
    name = tmux_name(terminal_id)
    return [
        "sh", "-c", 'echo $$ > "$0"; exec "$@"', _client_pid_file(client_id),
        "tmux", "-u", "new-session", "-A", "-s", name, "-x", str(cols), "-y", str(rows), "-c", "/workspace",
        "bash", "-l", ";",
        "set-option", "-t", name, "status", "off", ";",
        "set-option", "-t", name, "history-limit", "10000", ";",
        "set-option", "-s", "escape-time", "0", ";",
        "set-window-option", "-t", name, "aggressive-resize", "on",
    ]  # fmt: skip


def terminal_detach(*, session: Session, client_id: str) -> None:
    """Hang up the tmux client a closed WebSocket was showing; its shell and tmux session stay.

    Docker does not end a TTY exec when the connection to it closes (moby#9098), so without
    this every reload or dropped network would leave a tmux client and an exec behind in the
    sandbox, up to its pids limit. Only a process named ``tmux: client`` gets the hangup, so a
    pid recycled by another program is never hit. Raises a ``DomainError`` when the sandbox is
    not running.
    """
    script = (
        # The pid file appears within milliseconds of the exec starting; wait a little for it.
        'for _ in 1 2 3 4 5 6 7 8 9 10; do [ -s "$0" ] && break; sleep 0.05; done; '
        'pid=$(cat "$0" 2>/dev/null); rm -f "$0"; '
        'case "$(cat "/proc/${pid:-0}/comm" 2>/dev/null)" in "tmux: client"*) kill -HUP "$pid";; esac'
    )
    # Through the session's persistent helper: a few ms, where a fresh `docker exec` costs ~60.
    workspace_exec(session=session, argv=["sh", "-c", script, _client_pid_file(client_id)], timeout=10)


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
