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


class InvalidTerminalId(DomainError):
    code = "invalid_terminal_id"
    default_detail = "A terminal id is 1 to 32 letters, digits, '-' or '_'."


def tmux_name(terminal_id: str) -> str:
    if not TERMINAL_ID.match(terminal_id or ""):
        raise InvalidTerminalId()
    return TMUX_PREFIX + terminal_id


def tmux_attach_argv(terminal_id: str, *, cols: int, rows: int) -> list[str]:
    """Attach to the terminal's tmux session, creating it (a login bash in /workspace) if new.

    tmux draws the whole screen on attach, which is how a reload gets its screen back. The
    status bar is off (the IDE has its own tabs) and the scrollback is generous.
    """
    name = tmux_name(terminal_id)
    return [
        "tmux", "-u", "new-session", "-A", "-s", name, "-x", str(cols), "-y", str(rows), "-c", "/workspace",
        "bash", "-l", ";",
        "set-option", "-t", name, "status", "off", ";",
        "set-option", "-t", name, "history-limit", "10000", ";",
        "set-option", "-s", "escape-time", "0", ";",
        "set-window-option", "-t", name, "aggressive-resize", "on",
    ]  # fmt: skip


def terminal_list(*, session: Session) -> list[dict[str, Any]]:
    result = workspace_exec(
        session=session,
        argv=["tmux", "list-sessions", "-F", "#{session_name} #{session_created} #{session_attached}"],
        timeout=10,
    )
    terminals = []
    for line in result.stdout.decode(errors="replace").splitlines():
        name, created, attached = [*line.split(" "), "", "", ""][:3]
        if name.startswith(TMUX_PREFIX):
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
