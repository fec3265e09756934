"""A tenant attacks their own terminals' PTY host, from inside the sandbox, as the sandbox user
(``docker exec``, the way their shell would): kill it, ``pkill -f`` its patterns, write garbage to
its socket, attach and never read. Only that user's terminals suffer, and the next attach starts
afresh; another user's terminal, on the same daphne, never notices.
"""

from __future__ import annotations

import time

import docker
import httpx
import pytest
from django.contrib.auth import get_user_model

from terminal_app.consumers import CLOSE_ERROR
from tests.conftest import PASSWORD
from tests.terminal.test_terminal_wire import (
    WAIT,
    Wire,
    _ctrl_c_seconds,
    _flood,
    alice_on_the_wire,
    host_pid,
    login,
    processes,
    rss_kb,
    terminal,
    terminal_processes,
)

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]

ENGINE = docker.from_env()
SANDBOX_USER = "1000:1000"


def tenant(wire: Wire, argv: list[str], *, detach: bool = False) -> tuple[int, str]:
    """Run ``argv`` in the sandbox as its user, with the container's environment."""
    container = ENGINE.containers.get(wire.container)
    result = container.exec_run(argv, user=SANDBOX_USER, detach=detach)
    if detach:
        return 0, ""
    return result.exit_code, result.output.decode(errors="replace")


def bob_on_the_wire(wire: Wire) -> Wire:
    get_user_model().objects.create_user("bob", "bob@example.com", PASSWORD)
    token = login(wire.server, "bob")
    created = httpx.post(
        f"{wire.server.url}/api/vibecode/sessions/create",
        json={"name": "bystander"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=120,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    return Wire(wire.server, token, body["session_id"], body["container_name"])


@pytest.fixture
def wire(daphne_server, sandboxes) -> Wire:
    return alice_on_the_wire(daphne_server)


def shell_pid(term) -> str:
    mark = term.run("echo SH:$$:END")
    return term.wait_for(r"SH:(\d+):END", since=mark).group(1)


def wait_for(condition, *, timeout: float = WAIT, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_killed_pty_host_ends_only_that_users_terminals_and_the_next_attach_starts_anew(wire):
    bob = bob_on_the_wire(wire)
    with terminal(bob, "b") as bystander:
        bob_shell = shell_pid(bystander)
        with terminal(wire) as term:
            shell_pid(term)
            old_host = host_pid(wire.container)
            code, output = tenant(wire, ["pkill", "-KILL", "-x", "vibecode-pty"])
            assert code == 0, output
            # The attach reports the host gone; the IDE would reconnect.
            assert term.wait_closed() == CLOSE_ERROR
            assert [m["code"] for m in term.messages if m["type"] == "error"] == ["terminal_dropped"]
        # The shells of the dead host got their hangup.
        wait_for(lambda: terminal_processes(processes(wire.container)) == [], what="the old shells to end")
        with terminal(wire) as term:
            shell_pid(term)
            assert host_pid(wire.container) != old_host
        # bob's terminal never noticed: same shell, still answering.
        assert shell_pid(bystander) == bob_shell


def test_pkill_f_python3_or_bash_ends_only_what_it_names_and_everything_recovers(wire):
    with terminal(wire) as term:
        shell = shell_pid(term)
        host = host_pid(wire.container)
        host_cmd = processes(wire.container)[str(host)]
        assert "python3" not in host_cmd and "bash" not in host_cmd, host_cmd
        # The user's pkill -f python3 ends the helper and this attach, not the host or the shell.
        code, output = tenant(wire, ["pkill", "-KILL", "-f", "python3"])
        assert code == 0, output
        assert term.wait_closed() == CLOSE_ERROR
    with terminal(wire) as term:
        assert shell_pid(term) == shell and host_pid(wire.container) == host
        files = wire.api("GET", f"/sessions/{wire.session_id}/files?path=")
        assert files.status_code == 200, files.text  # a new helper answers
        # pkill -f bash ends the shells (an interactive bash ignores SIGTERM, hence -KILL); the
        # terminal reports the exit, the host stays, and the next attach gets a new shell.
        code, output = tenant(wire, ["pkill", "-KILL", "-f", "bash"])
        assert code == 0, output
        assert term.wait_message("exit")["code"] == 137
    with terminal(wire) as term:
        assert shell_pid(term) != shell and host_pid(wire.container) == host


GARBAGE = r"""
import os, socket, struct, time
def conn():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(b"\0vibecode-pty")
    return s
for payload in (
    os.urandom(65536),
    b"A" + struct.pack(">I", 0xFFFFFFFF),
    b"A" + struct.pack(">I", 5) + b"{{{{{",
    b"A" + struct.pack(">I", 2) + b"[]",
    b"I" + struct.pack(">I", 3) + b"abc",
    b"A" + struct.pack(">I", 16) + b'{"id": "no;way"}',
    b"\x00" * 4,
):
    s = conn()
    try:
        s.sendall(payload)
    except OSError:
        pass
    s.close()
held = [conn() for _ in range(50)]  # connections that never say anything
for s in held:
    s.sendall(b"A\x00\x00")
print("SENT")
time.sleep(1)
"""


def test_garbage_on_the_pty_hosts_socket_harms_nothing(wire):
    with terminal(wire) as term:
        shell = shell_pid(term)
        host = host_pid(wire.container)
        code, output = tenant(wire, ["python3", "-c", GARBAGE])
        assert code == 0 and "SENT" in output, output
        assert shell_pid(term) == shell
        assert host_pid(wire.container) == host
    with terminal(wire, "another") as term:
        shell_pid(term)
        assert host_pid(wire.container) == host


STUCK_VIEWER = r"""
import json, socket, struct, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(b"\0vibecode-pty")
body = json.dumps({"id": "main", "cols": 80, "rows": 24}).encode()
s.sendall(b"A" + struct.pack(">I", len(body)) + body)
time.sleep(600)
"""


def test_a_viewer_in_the_sandbox_that_never_reads_leaves_the_flow_and_the_tab_flows(wire):
    with terminal(wire) as term:
        term.keep = 1 << 16
        shell_pid(term)
        host = host_pid(wire.container)
        tenant(wire, ["python3", "-c", STUCK_VIEWER], detach=True)
        listed = lambda: wire.api("GET", f"/sessions/{wire.session_id}/terminals").json()  # noqa: E731
        wait_for(lambda: listed()[0]["attached"] == 2, what="the stuck viewer to attach")
        before = rss_kb(host)
        _flood(term)
        term.drain(7.0)
        assert term.drain(2.0) > 1_000_000, "the tab's output did not flow again"
        assert rss_kb(host) - before < 16 * 1024
        assert _ctrl_c_seconds(term) < 1.0
