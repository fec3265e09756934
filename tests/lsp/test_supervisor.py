"""The language server supervisor (sandbox/agent.py's ``lsp`` mode) on the real Docker engine,
through ``SandboxRuntime.open_language_server``: the image's real pylsp and
typescript-language-server, and a tiny LSP server written into the workspace that echoes what it
receives (a real process, no mock) where the test has to see what reaches a server.

The tenant meddles from inside (kills the server, writes files, runs servers that flood or talk
garbage): only the stream concerned ends, and nothing is left running.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import docker
import pytest

from sessions_app import services
from sessions_app.models import Session
from sessions_app.runtime import get_runtime
from sessions_app.runtime.helper import ProcessStream
from sessions_app.specs import session_ref
from workspace_app.services import workspace_delete, workspace_exec, workspace_write

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.docker]

ENGINE = docker.from_env()

# The argv of settings.VIBECODE_LSP_SERVERS: absolute paths, the sandbox's PATH is the user's.
PYLSP = ["/usr/bin/pylsp"]
TSLS = ["/usr/bin/node", "/opt/vibecode/lsp/node_modules/typescript-language-server/lib/cli.mjs", "--stdio"]
ECHO = ["/usr/bin/python3", "/workspace/tools/echo_lsp.py"]

# What Monaco's client declares, as far as these tests need: diagnostics are pushed only to a
# client that says it takes them (typescript-language-server 6).
CAPABILITIES = {
    "textDocument": {
        "synchronization": {"didSave": True},
        "publishDiagnostics": {"relatedInformation": True},
        "completion": {"completionItem": {"snippetSupport": False}},
        "hover": {"contentFormat": ["markdown", "plaintext"]},
    },
    "workspace": {"didChangeWatchedFiles": {"dynamicRegistration": False}},
}

# Echoes every message it receives as a notification {"method": "echo", "params": message},
# answers initialize, and says hello with its pid first.
ECHO_SERVER = r"""
import json, os, sys

def read():
    header = b""
    while not header.endswith(b"\r\n\r\n"):
        byte = sys.stdin.buffer.read(1)
        if not byte:
            return None
        header += byte
    return sys.stdin.buffer.read(int(header.split(b":")[1]))

def send(message):
    body = json.dumps(message).encode()
    sys.stdout.buffer.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    sys.stdout.buffer.flush()

send({"jsonrpc": "2.0", "method": "hello", "params": {"pid": os.getpid(), "cwd": os.getcwd()}})
while (body := read()) is not None:
    message = json.loads(body)
    if message.get("method") == "initialize":
        send({"jsonrpc": "2.0", "id": message["id"], "result": {"capabilities": {}}})
    send({"jsonrpc": "2.0", "method": "echo", "params": message})
"""

# Lists the sandbox's processes as JSON lines: [pid, argv...] (each argument cut to 200 chars).
PROCESS_LIST = r"""
import json, os
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")[:-1]
        except OSError:
            continue
        if argv:
            print(json.dumps([int(pid)] + [arg.decode(errors="replace")[:200] for arg in argv]))
"""


class StreamEnded(AssertionError):
    pass


class LspClient:
    """An LSP client over the runtime's stream; a thread parses what comes back."""

    def __init__(self, stream: ProcessStream) -> None:
        self.stream = stream
        self.inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self.ended = False
        self._ids = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buffer = bytearray()
        while chunk := self.stream.read():
            buffer += chunk
            while (end := buffer.find(b"\r\n\r\n")) >= 0:
                name, _, value = bytes(buffer[:end]).partition(b":")
                assert name == b"Content-Length", buffer[:end]
                length = int(value)
                if len(buffer) < end + 4 + length:
                    break
                self.inbox.put(json.loads(buffer[end + 4 : end + 4 + length]))
                del buffer[: end + 4 + length]
        self.inbox.put(None)

    def send(self, message: dict[str, Any]) -> None:
        body = json.dumps(message).encode()
        self.stream.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def notify(self, method: str, params: dict[str, Any]) -> None:
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    def request(self, method: str, params: dict[str, Any], *, timeout: float = 60) -> Any:
        self._ids += 1
        number = self._ids
        self.send({"jsonrpc": "2.0", "id": number, "method": method, "params": params})
        reply = self.wait(lambda m: m.get("id") == number and "method" not in m, timeout, f"{method} reply")
        assert "error" not in reply, reply
        return reply["result"]

    def wait(self, wanted: Callable[[dict[str, Any]], bool], timeout: float, what: str) -> dict[str, Any]:
        """The next message ``wanted`` picks; the others are kept in ``seen``."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {what} within {timeout} s; the last messages: {self.seen[-5:]}")
            try:
                message = self.inbox.get(timeout=left)
            except queue.Empty:
                continue
            if message is None:
                self.ended = True
                raise StreamEnded(f"the stream ended before {what}; the last messages: {self.seen[-5:]}")
            self.seen.append(message)
            if "method" in message and "id" in message:  # a request of the server's: answer it
                count = len((message.get("params") or {}).get("items") or [])
                result = [None] * count if message["method"] == "workspace/configuration" else None
                self.send({"jsonrpc": "2.0", "id": message["id"], "result": result})
            if wanted(message):
                return message

    def wait_end(self, timeout: float) -> list[dict[str, Any]]:
        """Everything until the stream ends (which it must within ``timeout``)."""
        rest: list[dict[str, Any]] = []

        def keep(message: dict[str, Any]) -> bool:
            rest.append(message)
            return False

        try:
            self.wait(keep, timeout, "the end of the stream")
        except StreamEnded:
            return rest
        raise AssertionError("unreachable: wait only returns a message that keep wanted")

    def initialize(self) -> dict[str, Any]:
        root = "file:///workspace"
        result = self.request(
            "initialize",
            {
                "processId": None,
                "rootUri": root,
                "workspaceFolders": [{"uri": root, "name": "workspace"}],
                "capabilities": CAPABILITIES,
            },
        )
        self.notify("initialized", {})
        return result

    def open(self, path: str, language_id: str, text: str) -> str:
        uri = f"file:///workspace/{path}"
        item = {"uri": uri, "languageId": language_id, "version": 1, "text": text}
        self.notify("textDocument/didOpen", {"textDocument": item})
        return uri

    def diagnostics(self, uri: str, *, timeout: float = 60) -> list[dict[str, Any]]:
        """The first non-empty diagnostics published for ``uri``."""
        message = self.wait(
            lambda m: (
                m.get("method") == "textDocument/publishDiagnostics"
                and m["params"]["uri"] == uri
                and bool(m["params"]["diagnostics"])
            ),
            timeout,
            f"diagnostics for {uri}",
        )
        return message["params"]["diagnostics"]

    def close(self) -> None:
        self.stream.close()


@pytest.fixture
def session(alice, sandboxes) -> Session:
    return services.session_create(user=alice)


@pytest.fixture
def open_server(session) -> Iterator[Callable[..., LspClient]]:
    clients: list[LspClient] = []

    def start(language: str, argv: list[str]) -> LspClient:
        stream = get_runtime().open_language_server(session_ref(session), language=language, argv=argv)
        clients.append(LspClient(stream))
        return clients[-1]

    yield start
    for client in clients:
        client.close()


def processes(session: Session) -> list[list[Any]]:
    """[pid, argv...] of every process in the sandbox, but the one listing them."""
    container = ENGINE.containers.get(session.container_name)
    result = container.exec_run(["/usr/bin/python3", "-c", PROCESS_LIST], user="1000:1000")
    assert result.exit_code == 0, result.output
    found = [json.loads(line) for line in result.output.decode().splitlines()]
    return [p for p in found if p[1:3] != ["/usr/bin/python3", "-c"] or p[3] != PROCESS_LIST[:200]]


def pylsp_pids(session: Session) -> list[int]:
    return [p[0] for p in processes(session) if p[1:3] == ["/usr/bin/python3", "/usr/bin/pylsp"]]


def supervisor_pids(session: Session) -> list[int]:
    return [p[0] for p in processes(session) if p[1] == "/usr/bin/python3" and "lsp" in p and "--" in p]


def tenant(session: Session, script: str) -> str:
    container = ENGINE.containers.get(session.container_name)
    result = container.exec_run(["sh", "-c", script], user="1000:1000")
    assert result.exit_code == 0, result.output
    return result.output.decode(errors="replace")


def wait_for(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def completion_labels(result: Any) -> list[str]:
    items = result["items"] if isinstance(result, dict) else result
    return [item["label"] for item in items]


def completes_os_path(pylsp: LspClient, name: str = "main.py") -> bool:
    uri = pylsp.open(name, "python", "import os\nos.pa")
    position = {"line": 1, "character": 5}
    result = pylsp.request("textDocument/completion", {"textDocument": {"uri": uri}, "position": position})
    return "path" in completion_labels(result)


def helper_answers(session: Session) -> bool:
    try:
        return workspace_exec(session=session, argv=["true"]).exit_code == 0
    except Exception:  # the helper was just killed: the next call starts another
        return False


# --- the real servers --------------------------------------------------------------------------


def test_pylsp_completes_and_reports_a_syntax_error(open_server):
    pylsp = open_server("python", PYLSP)
    capabilities = pylsp.initialize()["capabilities"]
    assert capabilities["completionProvider"] and capabilities["documentFormattingProvider"]

    assert completes_os_path(pylsp)

    broken = pylsp.open("broken.py", "python", "def f(:\n    return 1\n")
    diagnostics = pylsp.diagnostics(broken)
    assert diagnostics[0]["severity"] == 1, diagnostics  # an error
    assert {d["source"] for d in diagnostics} == {"pyflakes"}, diagnostics

    # Formatting is black's.
    ugly = pylsp.open("ugly.py", "python", "x = {  'a':37}\n")
    edits = pylsp.request(
        "textDocument/formatting",
        {"textDocument": {"uri": ugly}, "options": {"tabSize": 4, "insertSpaces": True}},
    )
    assert edits and edits[0]["newText"] == 'x = {"a": 37}\n', edits


def test_pylsp_reports_no_style_nits_only_real_problems(open_server):
    pylsp = open_server("python", PYLSP)
    pylsp.initialize()
    # Long lines, missing blank lines and spaces would all be pycodestyle's (were it installed);
    # the unused import is pyflakes'.
    uri = pylsp.open("style.py", "python", "import os\ndef f( x ):\n  return x+1 # " + "y" * 120 + "\n")
    diagnostics = pylsp.diagnostics(uri)
    assert [d["message"] for d in diagnostics] == ["'os' imported but unused"], diagnostics


def test_typescript_language_server_reports_a_type_error(session, open_server):
    workspace_write(session=session, path="src/main.ts", content=b'const x: number = "a";\n')
    tsls = open_server("typescript", TSLS)
    capabilities = tsls.initialize()["capabilities"]
    assert capabilities["completionProvider"]
    uri = tsls.open("src/main.ts", "typescript", 'const x: number = "a";\n')
    diagnostics = tsls.diagnostics(uri, timeout=90)
    assert any("not assignable to type 'number'" in d["message"] for d in diagnostics), diagnostics
    # The image's initializationOptions: one tsserver, and no typings installer.
    scripts = [p[2].rsplit("/", 1)[-1] for p in processes(session) if p[1] == "/usr/bin/node"]
    assert sorted(scripts) == ["cli.mjs", "tsserver.js"], scripts

    other = tsls.open("src/other.ts", "typescript", "console.lo")
    position = {"line": 0, "character": 10}
    labels = completion_labels(
        tsls.request("textDocument/completion", {"textDocument": {"uri": other}, "position": position})
    )
    assert "log" in labels


# --- one server per language --------------------------------------------------------------------


def test_a_second_server_for_a_language_replaces_the_first(session, open_server):
    first = open_server("python", PYLSP)
    first.initialize()
    wait_for(lambda: len(pylsp_pids(session)) == 1, timeout=30, what="the first pylsp")
    other_language = open_server("typescript", TSLS)
    other_language.initialize()

    second = open_server("python", PYLSP)
    rest = first.wait_end(timeout=15)
    assert rest and rest[-1] == {"jsonrpc": "2.0", "method": "$/vibecode/replaced"}, rest
    second.initialize()
    assert completes_os_path(second)
    assert len(pylsp_pids(session)) == 1
    assert len(supervisor_pids(session)) == 2  # the second python one, and typescript's
    # Another language's server was left alone.
    assert other_language.request("shutdown", {}) is None


def test_a_supervisor_that_does_not_let_go_is_killed_after_two_seconds(session, open_server):
    first = open_server("python", PYLSP)
    first.initialize()
    [stuck] = supervisor_pids(session)
    [first_server] = pylsp_pids(session)
    tenant(session, f"kill -STOP {stuck}")  # deaf to the SIGTERM it is sent

    started = time.monotonic()
    second = open_server("python", PYLSP)
    second.initialize()
    assert 2 <= time.monotonic() - started < 15
    first.wait_end(timeout=10)  # killed, with no word
    [server] = pylsp_pids(session)
    assert server != first_server
    assert supervisor_pids(session) != [stuck]


def test_closing_the_stream_leaves_no_process_behind(session, open_server):
    before = {p[0] for p in processes(session)}
    pylsp = open_server("python", PYLSP)
    pylsp.initialize()
    tsls = open_server("typescript", TSLS)
    tsls.initialize()
    uri = tsls.open("a.ts", "typescript", "let a: string = 1;\n")
    tsls.diagnostics(uri, timeout=90)  # tsserver runs by now (a grandchild)
    assert len(processes(session)) >= len(before) + 5  # 2 supervisors, 2 servers, tsserver

    pylsp.close()
    tsls.close()
    wait_for(
        lambda: {p[0] for p in processes(session)} <= before,
        timeout=5,
        what="every process of the servers to end",
    )


def test_a_server_killed_from_the_terminal_is_reported(session, open_server):
    pylsp = open_server("python", PYLSP)
    pylsp.initialize()
    [pid] = pylsp_pids(session)

    tenant(session, f"kill -9 {pid}")

    rest = pylsp.wait_end(timeout=10)
    assert rest[-1:] == [{"jsonrpc": "2.0", "method": "$/vibecode/exited", "params": {"code": 137}}], rest
    wait_for(lambda: not supervisor_pids(session), timeout=5, what="the supervisor to end")
    # And the next one starts as usual.
    again = open_server("python", PYLSP)
    assert again.initialize()["capabilities"]["hoverProvider"]


def test_the_helpers_sweeps_leave_language_servers_alone(session, open_server):
    pylsp = open_server("python", PYLSP)
    pylsp.initialize()
    [pid] = pylsp_pids(session)
    # Runs that leave orphans behind, the sweep of runs of dead helpers (every 3 beats), and a
    # helper killed, whose successor sweeps at start.
    for _ in range(3):
        workspace_exec(session=session, argv=["sh", "-c", "sleep 30 & sleep 30 & echo started"])
    time.sleep(4)
    tenant(session, "pkill -KILL -f '^/usr/bin/python3 -I -u -c.* serve$'")
    wait_for(lambda: helper_answers(session), timeout=30, what="a new helper")
    time.sleep(4)

    assert pylsp_pids(session) == [pid]
    assert completes_os_path(pylsp)


def test_under_gvisor_too(alice, sandboxes, settings):
    settings.VIBECODE_SANDBOX_RUNTIME = "runsc"
    session = services.session_create(user=alice)
    ref = session_ref(session)
    first = LspClient(get_runtime().open_language_server(ref, language="python", argv=PYLSP))
    second = None
    try:
        first.initialize()
        assert completes_os_path(first)
        second = LspClient(get_runtime().open_language_server(ref, language="python", argv=PYLSP))
        assert first.wait_end(timeout=15)[-1]["method"] == "$/vibecode/replaced"
        second.initialize()
        [pid] = pylsp_pids(session)
        tenant(session, f"kill -9 {pid}")
        assert second.wait_end(timeout=10)[-1]["params"] == {"code": 137}
        wait_for(lambda: not supervisor_pids(session), timeout=5, what="the supervisor to end")
    finally:
        first.close()
        if second is not None:
            second.close()


# --- what the supervisor adds: file changes and settings -----------------------------------------


def echo_of(method: str) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m.get("method") == "echo" and m["params"].get("method") == method


def test_files_changed_on_disk_reach_the_server_once_it_is_initialized(session, open_server):
    workspace_write(session=session, path="tools/echo_lsp.py", content=ECHO_SERVER.encode())
    server = open_server("echo", ECHO)
    hello = server.wait(lambda m: m.get("method") == "hello", 30, "the echo server's hello")
    assert hello["params"]["cwd"] == "/workspace"
    server.request("initialize", {"processId": None, "rootUri": "file:///workspace", "capabilities": {}})
    # Before "initialized", nothing is watched: this file is there when watching starts.
    workspace_write(session=session, path="before.py", content=b"x = 1\n")
    time.sleep(2.5)
    server.notify("initialized", {})
    server.wait(echo_of("initialized"), 10, "the echo of initialized")

    # The first scan may race the first write: write again until the server hears of it.
    def changes_of(path: str, kinds: set[int]) -> Callable[[dict[str, Any]], bool]:
        uri = f"file:///workspace/{path}"
        return lambda m: (
            echo_of("workspace/didChangeWatchedFiles")(m)
            and any(
                change["uri"] == uri and change["type"] in kinds
                for change in m["params"]["params"]["changes"]
            )
        )

    for attempt in range(6):
        workspace_write(session=session, path="src/new file.py", content=b"y = %d\n" % attempt)
        workspace_write(session=session, path="node_modules/pkg/index.js", content=b"%d" % attempt)
        workspace_write(session=session, path=".git/HEAD", content=b"%d" % attempt)
        try:
            server.wait(changes_of("src/new%20file.py", {1, 2}), 3, "a change of src/new file.py")
            break
        except AssertionError:
            continue
    else:
        raise AssertionError(f"no change of src/new file.py reached the server: {server.seen}")

    workspace_delete(session=session, path="src/new file.py")
    server.wait(changes_of("src/new%20file.py", {3}), 10, "the deletion of src/new file.py")

    watched = [
        change
        for message in server.seen
        if echo_of("workspace/didChangeWatchedFiles")(message)
        for change in message["params"]["params"]["changes"]
    ]
    uris = {change["uri"] for change in watched}
    assert "file:///workspace/before.py" not in uris
    assert not [uri for uri in uris if "node_modules" in uri or ".git" in uri], uris
    first_watch = next(i for i, m in enumerate(server.seen) if echo_of("workspace/didChangeWatchedFiles")(m))
    assert first_watch > next(i for i, m in enumerate(server.seen) if echo_of("initialized")(m))


def test_the_images_settings_go_to_pylsp_under_the_editors_own(session, open_server):
    # The echo server stands in for pylsp, so the test sees what pylsp would be sent.
    workspace_write(session=session, path="tools/echo_lsp.py", content=ECHO_SERVER.encode())
    server = open_server("python", ECHO)
    server.request("initialize", {"processId": None, "rootUri": "file:///workspace", "capabilities": {}})
    server.notify("initialized", {})
    sent = server.wait(echo_of("workspace/didChangeConfiguration"), 10, "the image's settings")
    plugins = sent["params"]["params"]["settings"]["pylsp"]["plugins"]
    assert plugins["pycodestyle"] == {"enabled": False} and plugins["pyflakes"] == {"enabled": True}

    # pylsp replaces its settings with each didChangeConfiguration: the editor's own is merged
    # over the image's, so turning one plugin on does not turn the others back to their defaults.
    server.notify(
        "workspace/didChangeConfiguration",
        {"settings": {"pylsp": {"plugins": {"pycodestyle": {"enabled": True, "maxLineLength": 100}}}}},
    )
    sent = server.wait(echo_of("workspace/didChangeConfiguration"), 10, "the editor's settings")
    plugins = sent["params"]["params"]["settings"]["pylsp"]["plugins"]
    assert plugins["pycodestyle"] == {"enabled": True, "maxLineLength": 100}
    assert plugins["mccabe"] == {"enabled": False}


def test_the_images_initialization_options_go_to_typescript_under_the_editors_own(session, open_server):
    workspace_write(session=session, path="tools/echo_lsp.py", content=ECHO_SERVER.encode())
    server = open_server("typescript", ECHO)
    given = {"tsserver": {"logVerbosity": "off"}, "preferences": {"quoteStyle": "single"}}
    server.request("initialize", {"processId": None, "capabilities": {}, "initializationOptions": given})
    sent = server.wait(echo_of("initialize"), 10, "the echo of initialize")
    assert sent["params"]["params"]["initializationOptions"] == {
        "disableAutomaticTypingAcquisition": True,
        "tsserver": {"useSyntaxServer": "never", "logVerbosity": "off"},
        "preferences": {"quoteStyle": "single"},
    }
    server.notify("initialized", {})
    server.wait(echo_of("initialized"), 10, "the echo of initialized")
    server.notify("workspace/didChangeConfiguration", {"settings": {"typescript": {}}})
    sent = server.wait(echo_of("workspace/didChangeConfiguration"), 10, "the editor's settings")
    assert sent["params"]["params"] == {"settings": {"typescript": {}}}  # no settings of the image's
    assert len([m for m in server.seen if echo_of("workspace/didChangeConfiguration")(m)]) == 1


# --- hostile servers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["/usr/bin/yes", "garbage"],  # a flood of bytes that are not LSP
        ["/bin/sh", "-c", r"printf 'Content-Length: 99999999999\r\n\r\n'; exec sleep 600"],
        ["/bin/sh", "-c", r"printf 'Content-Length: 2\r\n\r\n{}Nonsense: 1\r\n\r\n'; exec sleep 600"],
    ],
    ids=["garbage-flood", "huge-message", "bad-header"],
)
def test_a_server_that_breaks_the_protocol_ends_only_its_own_stream(session, open_server, argv):
    pylsp = open_server("python", PYLSP)
    pylsp.initialize()

    hostile = open_server("junk", argv)
    rest = hostile.wait_end(timeout=15)
    assert all("vibecode" not in json.dumps(m) for m in rest), rest
    wait_for(
        lambda: not [p for p in processes(session) if p[1:] == argv or p[1:] == ["sleep", "600"]],
        timeout=5,
        what="the hostile server to be killed",
    )
    assert completes_os_path(pylsp)


def test_a_server_flooding_whole_messages_holds_up_only_its_own_stream(session, open_server):
    flood = r"""
import sys
body = b'{"jsonrpc":"2.0","method":"flood","params":"' + b"x" * 60000 + b'"}'
while True:
    sys.stdout.buffer.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
"""
    # Read a little of it, then nothing: the pipes fill up and the flooder blocks.
    flooder = get_runtime().open_language_server(
        session_ref(session), language="flood", argv=["/usr/bin/python3", "-c", flood]
    )
    try:
        assert b"Content-Length: " in flooder.read()
        pylsp = open_server("python", PYLSP)
        pylsp.initialize()
        assert completes_os_path(pylsp)
    finally:
        flooder.close()
    wait_for(
        lambda: not [p for p in processes(session) if p[1:] == ["/usr/bin/python3", "-c", flood[:200]]],
        timeout=5,
        what="the flooder to be killed",
    )
