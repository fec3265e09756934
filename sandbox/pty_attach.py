"""VibeCode's terminal attach: relays one WebSocket's terminal between its stdio and the sandbox's
PTY host (the ``pty-host`` mode of ``agent.py``, which the helper starts before every attach).

Sent like the helper, as ``python3 -I -S -u -c SOURCE pty-attach ID COLS ROWS``, by absolute path,
isolated, standard library only; kept small, because one starts per terminal connection. stdin:
frames for the host (1 kind byte, a 4-byte big-endian length, the payload), passed on as they
are; stdout: the terminal's output bytes, unframed; stderr: one JSON line per event
(``{"type": "exit", "code": N}``, ``{"type": "error", ...}``, ``{"type": "dropped"}``). It ends
when stdin closes (a detach: the terminal stays) or when the host says the terminal ended.
Keystrokes never wait behind output: stdin is read whatever stdout holds.
"""

import sys

sys.path[:] = [p for p in sys.path if p and p.startswith("/usr/") and not p.startswith("/usr/local")]

import json
import os
import select
import socket
import struct

ADDRESS = b"\0vibecode-pty"
READ = 256 * 1024
HIGH_WATER = 256 * 1024
FRAME_MAX = 1024 * 1024 + 64


def frame(kind, payload=b""):
    return kind + struct.pack(">I", len(payload)) + payload


def frames(buffer):
    """Complete frames at the start of ``buffer`` (consumed), as (kind, payload)."""
    found = []
    while len(buffer) >= 5:
        (size,) = struct.unpack_from(">I", buffer, 1)
        if size > FRAME_MAX:
            raise ValueError("frame too long")
        if len(buffer) < 5 + size:
            break
        found.append((bytes(buffer[:1]), bytes(buffer[5 : 5 + size])))
        del buffer[: 5 + size]
    return found


def event(message):
    os.set_blocking(2, True)
    os.write(2, json.dumps(message).encode() + b"\n")


def attach(terminal_id, cols, rows):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(ADDRESS)
    except OSError as exc:
        event({"type": "error", "code": "terminal_failed", "detail": f"No terminals' host: {exc}"})
        return
    sock.sendall(frame(b"A", json.dumps({"id": terminal_id, "cols": cols, "rows": rows}).encode()))
    sock.setblocking(False)
    os.set_blocking(0, False)
    os.set_blocking(1, False)
    host = sock.fileno()
    poller = select.poll()
    inbox = bytearray()
    to_host = bytearray()
    to_out = bytearray()

    def finish(message):
        os.set_blocking(1, True)
        while to_out:
            del to_out[: os.write(1, to_out)]
        event(message)
        sys.exit(0)

    while True:
        poller.register(0, select.POLLIN if len(to_host) < HIGH_WATER else 0)
        poller.register(
            host, (select.POLLIN if len(to_out) < HIGH_WATER else 0) | (select.POLLOUT if to_host else 0)
        )
        poller.register(1, select.POLLOUT if to_out else 0)
        for fd, mask in poller.poll():
            if fd == 0 and mask:
                try:
                    data = os.read(0, READ)
                except BlockingIOError:
                    continue
                if not data:  # the backend detached: the terminal stays
                    sock.close()
                    sys.exit(0)
                to_host += data
            elif fd == 1 and mask:
                try:
                    del to_out[: os.write(1, to_out)]
                except BlockingIOError:
                    pass
                except OSError:
                    sys.exit(0)  # nobody reads the output any more
            elif fd == host:
                if mask & select.POLLOUT and to_host:
                    try:
                        del to_host[: sock.send(to_host)]
                    except BlockingIOError:
                        pass
                    except OSError:
                        finish({"type": "dropped"})
                if mask & (select.POLLIN | select.POLLHUP | select.POLLERR):
                    try:
                        data = sock.recv(READ)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        finish({"type": "dropped"})
                    inbox += data
                    for kind, payload in frames(inbox):
                        if kind == b"O":
                            to_out += payload
                        elif kind == b"X":
                            finish({"type": "exit", **json.loads(payload)})
                        elif kind == b"E":
                            finish({"type": "error", **json.loads(payload)})
        if to_out:  # write at once what the pipe takes: no extra round through poll
            try:
                del to_out[: os.write(1, to_out)]
            except BlockingIOError:
                pass
            except OSError:
                sys.exit(0)


def main():
    if len(sys.argv) != 5 or sys.argv[1] != "pty-attach":
        event({"type": "error", "code": "bad_request", "detail": "pty-attach ID COLS ROWS"})
        return
    try:
        cols, rows = max(2, min(1000, int(sys.argv[3]))), max(2, min(500, int(sys.argv[4])))
    except ValueError:
        cols, rows = 80, 24
    attach(sys.argv[2], cols, rows)


main()
