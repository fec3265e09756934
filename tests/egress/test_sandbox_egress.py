"""Package egress from a real sandbox (network ``none``) on the real Docker engine.

Programs in the sandbox use its ``HTTP(S)_PROXY`` (127.0.0.1:3128, the tunnel's listener) with
no option of their own; the connection crosses the Docker API to this test process's proxy, which
reaches the loopback test server (allowlisted explicitly) and nothing else on loopback.
"""

from __future__ import annotations

import os
import ssl
import time
import urllib.request

import docker
import pytest
from django.conf import settings as django_settings

from egress_app import policy, services
from egress_app.models import EgressConnection
from sessions_app import services as session_services
from sessions_app.models import Session
from tests.egress.conftest import REAL_RESOLVE
from workspace_app.services import workspace_exec

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.docker,
    pytest.mark.usefixtures("egress_policy", "sandboxes"),
]

ENGINE = docker.from_env()
WAIT = 60.0


def ca_bundle() -> str:
    """The bundle sandboxes should trust: the configured one, else this host's (scripts/test.sh
    sets it from $SSL_CERT_FILE; a bare pytest run may not)."""
    for path in (
        django_settings.VIBECODE_SANDBOX_CA_BUNDLE,
        os.environ.get("SSL_CERT_FILE", ""),
        "/etc/ssl/certs/ca-certificates.crt",
    ):
        if path and os.access(path, os.R_OK):
            return path
    return ""


@pytest.fixture(autouse=True)
def _egress_on(settings) -> None:
    settings.VIBECODE_EGRESS = "allowlist"
    settings.VIBECODE_SANDBOX_CA_BUNDLE = ca_bundle()


def create_session(api, name: str) -> Session:
    """A running session whose egress port listens (the tunnel started, as exec and terminals
    start it; under load its first start may take longer than the exec path waits)."""
    response = api.post("/api/vibecode/sessions/create", {"name": name}, format="json")
    assert response.status_code == 201, response.content
    session = Session.objects.get(public_id=response.json()["session_id"])

    def listening() -> bool:
        session_services.session_tunnel_ensure(session=session, wait=True)
        table = run(session, "print(open('/proc/net/tcp').read())")
        # 127.0.0.1:3128 (0100007F:0C38) in state LISTEN (0A).
        return any("0100007F:0C38" in line and line.split()[3] == "0A" for line in table.splitlines()[1:])

    wait_for(listening, "the egress port to listen")
    return session


def run(session: Session, script: str, *, timeout: float = 60) -> str:
    """``python3 -c script`` in the sandbox through the exec path (the container's environment)."""
    result = workspace_exec(session=session, argv=["python3", "-c", script], timeout=timeout)
    output = (result.stdout + result.stderr).decode(errors="replace")
    assert result.exit_code == 0, output
    return output


def tenant(session: Session, script: str) -> None:
    """Start ``python3 -c script`` in the sandbox as its user, in the background."""
    ENGINE.containers.get(session.container_name).exec_run(
        ["python3", "-c", script], user="1000:1000", detach=True
    )


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def fetch(url: str) -> str:
    return (
        "import os, urllib.request\n"
        "assert os.environ['HTTPS_PROXY'] == 'http://127.0.0.1:3128', os.environ\n"
        "try:\n"
        f"    print(urllib.request.urlopen({url!r}, timeout=30).read().decode())\n"
        "except Exception as exc:\n"
        "    print('ERROR', exc)\n"
    )


@pytest.fixture
def session(alice_api) -> Session:
    return create_session(alice_api, "egress")


def test_a_program_reaches_the_allowlisted_server_through_the_proxy(session, upstream):
    out = run(session, fetch(f"http://upstream.test:{upstream}/from-the-sandbox"))
    assert out.strip() == "hello from upstream", out
    wait_for(lambda: EgressConnection.objects.filter(session=session).exists(), "the audit row")
    row = EgressConnection.objects.get(session=session)
    assert (row.method, row.host, row.outcome, row.status_code) == ("GET", "upstream.test", "ok", 200)


def test_a_host_not_on_the_list_gets_a_one_line_403(session):
    out = run(session, fetch("https://example.org/"))
    assert out.startswith("ERROR") and "403 Forbidden (host not allowed)" in out, out
    out = run(session, fetch("http://rebind.test/"))
    assert "403" in out and "address refused" in out, out
    wait_for(lambda: EgressConnection.objects.count() == 2, "the audit rows")
    assert set(EgressConnection.objects.values_list("outcome", flat=True)) == {
        "refused_host",
        "refused_address",
    }


def test_the_sandbox_itself_still_has_no_network(session, upstream):
    """Without the proxy nothing gets out: the only way is through the backend."""
    script = (
        "import socket\n"
        "for address in [('203.0.113.80', 443), ('1.1.1.1', 53)]:\n"
        "    try:\n"
        "        socket.create_connection(address, timeout=5)\n"
        "        print('CONNECTED', address)\n"
        "    except OSError as exc:\n"
        "        print('no route', exc.errno)\n"
    )
    assert "CONNECTED" not in run(session, script)


def index_unreachable() -> str:
    """Why the package index cannot be reached from this backend, or '' when it can."""
    try:
        context = ssl.create_default_context(cafile=ca_bundle() or None)
        handler = urllib.request.HTTPSHandler(context=context)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), handler)
        opener.open("https://pypi.org/simple/iniconfig/", timeout=20).read(1)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return ""


def test_pip_install_user_from_the_real_index(session, settings, monkeypatch):
    reason = index_unreachable()
    if reason:
        print(f"skipped: the package index is unreachable from this backend ({reason})")
        pytest.skip(f"the package index is unreachable from this backend ({reason})")
    monkeypatch.setattr(policy, "resolve_host", REAL_RESOLVE)
    settings.VIBECODE_EGRESS_ALLOW = ["pypi.org", "files.pythonhosted.org"]
    settings.VIBECODE_EGRESS_PORTS = [443]
    result = workspace_exec(
        session=session,
        argv=[
            "python3",
            "-m",
            "pip",
            "install",
            "--user",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "iniconfig",  # small, pure Python, and not in the image (six is)
        ],
        timeout=240,
    )
    output = (result.stdout + result.stderr).decode(errors="replace")
    assert result.exit_code == 0, output
    assert run(session, "import iniconfig; print(iniconfig.__file__)").startswith("/workspace/.home/.local/")
    # Rows are written as connections end (pip's pooled ones when pip exits).
    wanted = {"pypi.org", "files.pythonhosted.org"}
    wait_for(
        lambda: wanted <= set(EgressConnection.objects.filter(outcome="ok").values_list("host", flat=True)),
        f"ok rows for {wanted}",
    )


HOSTILE = """
import os, select, socket, time
socks = [socket.create_connection(("127.0.0.1", 3128), timeout=30) for _ in range(200)]
replies = {}
deadline = time.monotonic() + 50
while len(replies) < 192 and time.monotonic() < deadline:
    readable, _, _ = select.select([s for s in socks if s not in replies], [], [], 1.0)
    for s in readable:
        replies[s] = s.recv(64)
busy = sum(reply.startswith(b"HTTP/1.1 503 Service Unavailable") for reply in replies.values())
with open("/tmp/flood.out", "w") as out:
    out.write(f"{busy} busy of {len(replies)} answered")
while not os.path.exists("/tmp/flood.release"):
    time.sleep(0.2)
"""


def test_a_sandbox_flooding_its_proxy_hurts_only_itself(session, bob_api, settings, upstream):
    settings.VIBECODE_EGRESS_MAX_CONNECTIONS_PER_WORKSPACE = 8
    settings.VIBECODE_EGRESS_HEAD_TIMEOUT_SECONDS = 120.0  # the held ones stay held
    hostile = create_session(bob_api, "hostile")
    tenant(hostile, HOSTILE)
    wait_for(lambda: services.egress_open_connections(session_public_id=hostile.public_id) == 8, "the cap")
    # Another user's egress works while the flood holds its eight.
    out = run(session, fetch(f"http://upstream.test:{upstream}/bystander"))
    assert out.strip() == "hello from upstream", out
    # The flood's own extra connections were turned away at once.
    report = "import os; print(open('/tmp/flood.out').read() if os.path.exists('/tmp/flood.out') else '')"
    wait_for(lambda: run(hostile, report).strip(), "the flood's report")
    assert run(hostile, report).strip() == "192 busy of 192 answered"
    assert services.egress_open_connections(session_public_id=hostile.public_id) == 8
    run(hostile, "open('/tmp/flood.release', 'w').close()")
    wait_for(lambda: services.egress_open_connections(session_public_id=hostile.public_id) == 0, "the end")
