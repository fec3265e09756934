"""Language servers over the real wire: a real daphne, a real WebSocket client, pylsp and
typescript-language-server in a real sandbox, beside the same servers reached by a raw Docker
exec (no supervisor, no daphne, no WebSocket) in the same run.

    .venv/bin/python -m bench.lsp [--completions N] [--starts N] [--edits N]

Measured, through VibeCode and raw:
- cold start: from opening the connection to the answer to ``initialize``;
- completion when warm (``os.pa`` in ``main.py``, ``console.lo`` in ``main.ts``): p50 and p99;
- diagnostics after an edit: a ``didChange`` that breaks the syntax, until the
  ``publishDiagnostics`` that reports it (then one that fixes it, until the list is empty);
- the sandbox's memory with no server, then with both servers idle after a file each.

Goal (issue 16): completion p50 at most 150 ms warm.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import struct
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import docker

from bench.common import (
    Stats,
    docker_client,
    ensure_image,
    print_header,
    print_row,
    sandbox_image,
    serve_checkout,
)
from bench.django_setup import bench_django

TARGET_COMPLETION_MS = 150.0
PY_URI = "file:///workspace/main.py"
TS_URI = "file:///workspace/main.ts"
PY_TEXT = "import os\nos.pa"
TS_TEXT = "const greeting: string = 'hi';\nconsole.lo"
# What the language servers' processes are called (for the memory figure's clean slate).
SERVER_PROCESSES = ("pylsp", "typescript-language-server", "tsserver")
# A clean text and a broken one per language, for the diagnostics after an edit.
DIAGNOSTIC_TEXTS = {
    "python": ("x = 1\n", "def f(:\n"),
    "typescript": ("const x: number = 1;\n", "const x: number = 'a';\n"),
}


class Lsp:
    """A minimal LSP client over a transport with ``send(dict)`` and ``receive() -> dict``."""

    def __init__(self, send: Callable[[dict[str, Any]], None], receive: Callable[[], dict[str, Any]]) -> None:
        self.send = send
        self.receive = receive
        self.ids = itertools.count(1)

    def request(self, method: str, params: Any) -> Any:
        ident = next(self.ids)
        self.send({"jsonrpc": "2.0", "id": ident, "method": method, "params": params})
        while True:
            message = self.receive()
            if message.get("id") == ident and "method" not in message:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result")
            if "method" in message and "id" in message:  # a request of the server's: answer null
                reply = [None] * len(message.get("params", {}).get("items", [])) or None
                self.send({"jsonrpc": "2.0", "id": message["id"], "result": reply})

    def notify(self, method: str, params: Any) -> None:
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    def initialize(self) -> None:
        capabilities = {"textDocument": {"publishDiagnostics": {}, "completion": {"completionItem": {}}}}
        self.request(
            "initialize", {"processId": None, "rootUri": "file:///workspace", "capabilities": capabilities}
        )
        self.notify("initialized", {})

    def open(self, uri: str, language: str, text: str) -> None:
        self.notify(
            "textDocument/didOpen",
            {"textDocument": {"uri": uri, "languageId": language, "version": 1, "text": text}},
        )

    def complete(self, uri: str, line: int, character: int) -> list[str]:
        result = self.request(
            "textDocument/completion",
            {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}},
        )
        items = result.get("items", []) if isinstance(result, dict) else (result or [])
        return [item["label"].strip() for item in items]

    def diagnostics(self, uri: str, version: int, text: str, *, want_errors: bool) -> float:
        """Seconds from a full-text ``didChange`` to the diagnostics that show (or clear) an error."""
        started = time.perf_counter()
        self.notify(
            "textDocument/didChange",
            {"textDocument": {"uri": uri, "version": version}, "contentChanges": [{"text": text}]},
        )
        while True:
            message = self.receive()
            if message.get("method") == "textDocument/publishDiagnostics" and message["params"]["uri"] == uri:
                if bool(message["params"]["diagnostics"]) == want_errors:
                    return time.perf_counter() - started
            elif "method" in message and "id" in message:
                self.send({"jsonrpc": "2.0", "id": message["id"], "result": None})


# --- transports -----------------------------------------------------------------------------------


class RawExec:
    """A language server started by a raw ``docker exec`` (stdin attached), LSP framed by hand."""

    def __init__(self, client: docker.DockerClient, container: str, argv: list[str]) -> None:
        exec_id = client.api.exec_create(
            container, argv, stdin=True, stdout=True, stderr=False, workdir="/workspace"
        )
        self.sock = client.api.exec_start(exec_id["Id"], socket=True)._sock
        self.buffer = b""
        self.body = b""

    def send(self, message: dict[str, Any]) -> None:
        body = json.dumps(message).encode()
        self.sock.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def _more(self) -> None:
        while len(self.buffer) < 8 or len(self.buffer) < 8 + struct.unpack(">I", self.buffer[4:8])[0]:
            chunk = self.sock.recv(262144)
            if not chunk:
                raise EOFError("the server's stream ended")
            self.buffer += chunk
        size = struct.unpack(">I", self.buffer[4:8])[0]
        if self.buffer[0] == 1:
            self.body += self.buffer[8 : 8 + size]
        self.buffer = self.buffer[8 + size :]

    def receive(self) -> dict[str, Any]:
        while b"\r\n\r\n" not in self.body:
            self._more()
        header, _, rest = self.body.partition(b"\r\n\r\n")
        length = next(
            int(v)
            for k, _, v in (h.partition(b":") for h in header.split(b"\r\n"))
            if k.lower() == b"content-length"
        )
        while len(rest) < length:
            self._more()
            header, _, rest = self.body.partition(b"\r\n\r\n")
        self.body = rest[length:]
        return json.loads(rest[:length])

    def close(self) -> None:
        self.sock.close()


class Ws:
    """The IDE's way: the WebSocket of docs/lsp-protocol.md through daphne."""

    def __init__(self, url: str, origin: str) -> None:
        from websockets.sync.client import connect

        self.ws = connect(url, origin=origin, proxy=None, compression=None, open_timeout=60, max_size=2**22)
        self.ws.__enter__()  # websockets wants its connections entered
        while json.loads(self.ws.recv()).get("vibecode") != "ready":
            pass

    def send(self, message: dict[str, Any]) -> None:
        self.ws.send(json.dumps(message))

    def receive(self) -> dict[str, Any]:
        while True:
            message = json.loads(self.ws.recv(timeout=120))
            if "vibecode" in message:
                raise RuntimeError(f"the bridge said {message}")
            return message

    def close(self) -> None:
        self.ws.close()


# --- measurements ---------------------------------------------------------------------------------


def cold_starts(open_transport: Callable[[], Any], n: int) -> Stats:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        transport = open_transport()
        Lsp(transport.send, transport.receive).initialize()
        samples.append(time.perf_counter() - started)
        transport.close()
        time.sleep(0.5)  # the supervisor kills the old server's group
    return Stats.from_seconds(samples)


def warm(
    transport: Any, *, uri: str, language: str, text: str, completions: int, edits: int
) -> dict[str, Stats]:
    lsp = Lsp(transport.send, transport.receive)
    lsp.initialize()
    lsp.open(uri, language, text)
    line = text.count("\n")
    character = len(text.rsplit("\n", 1)[-1])
    for _ in range(3):  # the first completions load the modules
        lsp.complete(uri, line, character)
    times = []
    for _ in range(completions):
        started = time.perf_counter()
        labels = lsp.complete(uri, line, character)
        times.append(time.perf_counter() - started)
    assert any(label in {"path", "log"} for label in labels), labels[:20]
    # Diagnostics on a document of their own: broken, then clean again, each until the server says so.
    clean, broken = DIAGNOSTIC_TEXTS[language]
    diag_uri = uri.replace("/main.", "/diag.")
    lsp.open(diag_uri, language, clean)
    diagnostics = []
    for version in range(2, 2 + 2 * edits, 2):
        diagnostics.append(lsp.diagnostics(diag_uri, version, broken, want_errors=True))
        lsp.diagnostics(diag_uri, version + 1, clean, want_errors=False)
    return {"completion": Stats.from_seconds(times), "diagnostics": Stats.from_seconds(diagnostics)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lsp", description=__doc__)
    parser.add_argument("--completions", type=int, default=100, help="warm completions timed per server")
    parser.add_argument("--starts", type=int, default=5, help="cold starts timed per server")
    parser.add_argument("--edits", type=int, default=10, help="edits timed for the diagnostics")
    args = parser.parse_args(argv)

    client = docker_client()
    image = sandbox_image()
    ensure_image(client, image)
    started_all = time.perf_counter()
    with bench_django() as user:
        from django.conf import settings
        from rest_framework_simplejwt.tokens import AccessToken

        from sessions_app import services
        from sessions_app.runtime import get_runtime
        from sessions_app.specs import session_ref
        from workspace_app.services import workspace_exec, workspace_write

        session = services.session_create(user=user, name="lsp bench")
        workspace_write(session=session, path="main.py", content=PY_TEXT.encode())
        workspace_write(session=session, path="main.ts", content=TS_TEXT.encode())
        token = str(AccessToken.for_user(user))
        servers = settings.VIBECODE_LSP_SERVERS
        container = session.container_name
        stats = lambda: get_runtime().stats(session_ref(session)).memory_bytes  # noqa: E731
        log_path = Path(os.environ["VIBECODE_VAR_DIR"]) / "daphne.log"
        results: dict[str, dict[str, Any]] = {}
        with serve_checkout(os.environ, log_path) as (_process, port):
            origin = f"http://127.0.0.1:{port}"

            def ws(language: str) -> Ws:
                url = f"ws://127.0.0.1:{port}/api/vibecode/ws/lsp?session_id={session.public_id}&language={language}&token={token}"
                return Ws(url, origin)

            def raw(language: str) -> RawExec:
                return RawExec(client, container, list(servers[language]["argv"]))

            for language, uri, text in (("python", PY_URI, PY_TEXT), ("typescript", TS_URI, TS_TEXT)):
                ours: dict[str, Stats] = {}
                floor: dict[str, Stats] = {}
                floor["start"] = cold_starts(lambda: raw(language), args.starts)  # noqa: B023
                ours["start"] = cold_starts(lambda: ws(language), args.starts)  # noqa: B023
                transport = raw(language)
                floor.update(
                    warm(
                        transport,
                        uri=uri,
                        language=language,
                        text=text,
                        completions=args.completions,
                        edits=args.edits,
                    )
                )
                transport.close()
                time.sleep(0.5)
                transport = ws(language)
                ours.update(
                    warm(
                        transport,
                        uri=uri,
                        language=language,
                        text=text,
                        completions=args.completions,
                        edits=args.edits,
                    )
                )
                transport.close()
                results[language] = {"ours": ours, "raw": floor}
            # Memory: every server of the runs above killed (a raw exec's server may outlive its
            # socket), then both started the IDE's way and left idle after a file each.
            # (The brackets keep the pattern from matching this very command line.)
            kill = "; ".join(f"pkill -9 -f '[{name[0]}]{name[1:]}'" for name in SERVER_PROCESSES) + "; true"
            workspace_exec(session=session, argv=["sh", "-c", kill], timeout=30)
            time.sleep(3.0)
            memory_none = stats()
            idle = [ws("python"), ws("typescript")]
            for transport, (uri, language, text) in zip(
                idle, ((PY_URI, "python", PY_TEXT), (TS_URI, "typescript", TS_TEXT)), strict=True
            ):
                lsp = Lsp(transport.send, transport.receive)
                lsp.initialize()
                lsp.open(uri, language, text)
                lsp.complete(uri, text.count("\n"), len(text.rsplit("\n", 1)[-1]))
            time.sleep(5.0)
            memory_both = stats()
            for transport in idle:
                transport.close()
    elapsed = time.perf_counter() - started_all

    print_header(
        f"Language servers through daphne and a WebSocket (SQLite, runc, {elapsed:.1f} s)", with_ratio=True
    )
    for language, label in (("python", "pylsp"), ("typescript", "typescript-language-server")):
        ours, floor = results[language]["ours"], results[language]["raw"]
        print_row(f"{label} cold start, raw exec (floor)", floor["start"])
        print_row(f"{label} cold start, via daphne", ours["start"], floor=floor["start"])
        print_row(f"{label} completion warm, raw exec (floor)", floor["completion"])
        print_row(f"{label} completion warm, via daphne", ours["completion"], floor=floor["completion"])
        print_row(f"{label} diagnostics after edit, raw (floor)", floor["diagnostics"])
        print_row(
            f"{label} diagnostics after edit, via daphne", ours["diagnostics"], floor=floor["diagnostics"]
        )
        c = ours["completion"]
        verdict = "PASS" if c.median <= TARGET_COMPLETION_MS else "MISS"
        print(
            f"  {label} completion p50/p99: "
            f"raw {floor['completion'].median:.1f}/{floor['completion'].p99:.1f} ms, "
            f"via daphne {c.median:.1f}/{c.p99:.1f} ms (goal p50 <= {TARGET_COMPLETION_MS:.0f} ms: {verdict})"
        )
    print_row("sandbox memory, no language server", Stats((memory_none / 1e6,), "MB"))
    print_row("sandbox memory, both servers idle", Stats((memory_both / 1e6,), "MB"))
    print(f"  both servers idle add {(memory_both - memory_none) / 1e6:.0f} MB to the sandbox")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
