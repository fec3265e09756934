"""A language server that misbehaves on request: the user's own program, run in a real sandbox
under the real supervisor (it is the user who chooses what runs there, so the backend must hold
whatever this does). Standard library only; its source is written into the workspace.

It answers ``echo`` with its params, and on ``initialize`` says who it is. Other methods make it
flood, write garbage, claim a huge message, exit, or stop reading.
"""

import json
import os
import sys
import time


def send(obj):
    body = json.dumps(obj).encode()
    sys.stdout.buffer.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    sys.stdout.buffer.flush()


def read():
    length = None
    while True:
        line = sys.stdin.buffer.readline()
        if not line:
            return None
        if line in (b"\r\n", b"\n"):
            break
        name, _, value = line.decode().partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    return json.loads(sys.stdin.buffer.read(length))


while True:
    message = read()
    if message is None:
        sys.exit(0)
    method, ident, params = message.get("method"), message.get("id"), message.get("params")
    if method == "initialize":
        send({"jsonrpc": "2.0", "id": ident, "result": {"capabilities": {}, "pid": os.getpid()}})
    elif method == "echo":
        send({"jsonrpc": "2.0", "id": ident, "result": params})
    elif method == "flood":  # ~params MB as fast as it can
        chunk = "x" * 60000
        for n in range(int(params) * 17):
            send({"jsonrpc": "2.0", "method": "flood", "params": {"n": n, "pad": chunk}})
    elif method == "garbage":
        sys.stdout.buffer.write(b"this is not LSP at all\r\n\r\n")
        sys.stdout.buffer.flush()
    elif method == "huge":
        sys.stdout.buffer.write(b"Content-Length: 1000000000\r\n\r\n{")
        sys.stdout.buffer.flush()
    elif method == "array":
        body = b"[1, 2]"
        sys.stdout.buffer.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        sys.stdout.buffer.flush()
    elif method == "exit-now":
        sys.exit(3)
    elif method == "stop-reading":
        send({"jsonrpc": "2.0", "id": ident, "result": "stopped"})
        time.sleep(3600)
