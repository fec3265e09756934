"""The terminals' wire into a sandbox: what the backend writes to a terminal attach
(``sandbox/pty_attach.py``), and the attach's argv. Pure functions, tested
without Docker; ``docs/terminal-protocol.md`` describes the whole path.

A frame is one kind byte, a 4-byte big-endian length and the payload. The attach passes its
stdin's frames on to the sandbox's PTY host as they are: ``I`` keystrokes, ``R`` a new size (two
big-endian 16-bit numbers, columns then rows), ``C`` end the terminal (its shell and everything
it runs).
"""

from __future__ import annotations

import struct

from sandbox import PTY_ATTACH_SOURCE

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


# The image's interpreter by absolute path, isolated (-I) and without site (-S: nothing to import
# from there, and a faster start), like the helper; see sandbox/pty_attach.py.
PTY_ATTACH_ARGV = ["/usr/bin/python3", "-I", "-S", "-u", "-c", PTY_ATTACH_SOURCE, "pty-attach"]


def pty_attach_argv(terminal_id: str, *, cols: int, rows: int) -> list[str]:
    """The attach program: it connects to the sandbox's PTY host (which the helper's
    ``pty_start`` made sure of) and relays between its stdio and the terminal ``terminal_id``."""
    return [*PTY_ATTACH_ARGV, terminal_id, str(cols), str(rows)]
