"""A small web app the preview tests run inside a sandbox (standard library only).

    python3 web_server.py PORT

* ``/``            an HTML page with a marker;
* ``/headers``     the request headers, as JSON;
* ``/big?mb=N``    N MiB of a repeating pattern;
* ``/events``      server-sent events: ``tick 0`` .. ``tick 4``, one every 0.3 s;
* ``/echo`` POST   the request body back;
* ``/ws``          a WebSocket echo (text and binary); ``close:<code>`` closes with that code.
"""

import base64
import hashlib
import json
import socketserver
import struct
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAGIC = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
PATTERN = bytes(range(256)) * 4096  # 1 MiB


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, status, body, content_type="text/plain"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path, _, query = self.path.partition("?")
        if path == "/":
            page = b"<!doctype html><title>sandbox app</title><h1 id=marker>served from the sandbox</h1>"
            self._send(200, page, "text/html")
        elif path == "/headers":
            headers = {k.lower(): v for k, v in self.headers.items()}
            self._send(200, json.dumps(headers).encode(), "application/json")
        elif path == "/big":
            mb = int(query.partition("=")[2] or 1)
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(mb * len(PATTERN)))
            self.end_headers()
            for _ in range(mb):
                self.wfile.write(PATTERN)
        elif path == "/events":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            for i in range(5):
                data = f"data: tick {i}\n\n".encode()
                self.wfile.write(data)
                self.wfile.flush()
                time.sleep(0.3)
            self.close_connection = True
        elif path == "/ws" and self.headers.get("Upgrade", "").lower() == "websocket":
            self._websocket()
        else:
            self._send(404, b"not here")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self._send(200, self.rfile.read(length), "application/octet-stream")

    # --- a minimal WebSocket server --------------------------------------------------------

    def _websocket(self):
        key = self.headers["Sec-WebSocket-Key"]
        accept = base64.b64encode(hashlib.sha1((key + MAGIC).encode()).digest()).decode()  # noqa: S324 (RFC 6455)
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        while True:
            frame = self._read_frame()
            if frame is None:
                return
            opcode, payload = frame
            if opcode == 8:
                self._write_frame(8, payload[:2])
                return
            if opcode == 9:
                self._write_frame(10, payload)
                continue
            if opcode == 1 and payload.startswith(b"close:"):
                self._write_frame(8, struct.pack(">H", int(payload[6:])))
                return
            self._write_frame(opcode, payload)

    def _read_frame(self):
        head = self.rfile.read(2)
        if len(head) < 2:
            return None
        opcode, length = head[0] & 0x0F, head[1] & 0x7F
        if length == 126:
            (length,) = struct.unpack(">H", self.rfile.read(2))
        elif length == 127:
            (length,) = struct.unpack(">Q", self.rfile.read(8))
        mask = self.rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
        data = bytearray(self.rfile.read(length))
        for i in range(len(data)):
            data[i] ^= mask[i % 4]
        return opcode, bytes(data)

    def _write_frame(self, opcode, payload):
        head = bytes([0x80 | opcode])
        if len(payload) < 126:
            head += bytes([len(payload)])
        elif len(payload) < 65536:
            head += bytes([126]) + struct.pack(">H", len(payload))
        else:
            head += bytes([127]) + struct.pack(">Q", len(payload))
        self.wfile.write(head + payload)
        self.wfile.flush()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


socketserver.TCPServer.allow_reuse_address = True
Server(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
