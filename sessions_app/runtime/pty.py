"""The terminals' wire into a sandbox: what the backend writes to a ``pty-attach`` (the helper
program's attach mode, ``sandbox/agent.py``), and the attach's argv. Pure functions, tested
without Docker; ``docs/terminal-protocol.md`` describes the whole path.

A frame is one kind byte, a 4-byte big-endian length and the payload. The attach passes its
stdin's frames on to the sandbox's PTY host as they are: ``I`` keystrokes, ``R`` a new size (two
big-endian 16-bit numbers, columns then rows), ``C`` end the terminal (its shell and everything
it runs).
"""

from __future__ import annotations

import struct

from sessions_app.runtime.helper import HELPER_ARGV

INPUT = b"I"
RESIZE = b"R"
CLOSE = b"C"


def pty_frame(kind: bytes, payload: bytes = b"") -> bytes:
    return kind + struct.pack(">I", len(payload)) + payload


def input_frame(data: bytes) -> bytes:
    return pty_frame(INPUT, data)


def resize_frame(*, cols: int, rows: int) -> bytes:
    return pty_frame(RESIZE, struct.pack(">HH", max(2, min(1000, cols)), max(2, min(500, rows))))


def close_frame() -> bytes:
    return pty_frame(CLOSE)


def pty_attach_argv(terminal_id: str, *, cols: int, rows: int) -> list[str]:
    """The helper program in its attach mode: it connects to the sandbox's PTY host (starting it
    on first use) and relays between its stdio and the terminal ``terminal_id``."""
    return [*HELPER_ARGV[:-1], "pty-attach", terminal_id, str(cols), str(rows)]
