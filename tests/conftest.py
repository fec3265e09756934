"""Shared fixtures: named users (alice owns, bob is another user, staff), API clients, a live
daphne server on the test database, and Playwright driving Debian's Chromium."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import django_ratelimit.core
import httpx
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from tests.private_engine import PrivateEngine

# Environment defaults (instance label, no maintenance thread...) live in tests/pytest_env.py.

REPO_ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO_ROOT / "test-artifacts"
PASSWORD = "correct-horse-battery"


@pytest.fixture(autouse=True)
def _fresh_rate_limits(monkeypatch) -> Iterator[None]:
    """Rate-limit counters live in the cache (Redis under make test); start each test clean.

    django-ratelimit counts in fixed windows; a test whose requests straddled a window's end
    would see its count start again (a flaky 200 where 429 is due). In this process the window
    is held for the test's duration; servers the tests start keep real time.
    """
    cache.clear()
    window_end = int(time.time()) + 59  # within a minute, as a real window ends
    monkeypatch.setattr(django_ratelimit.core, "_get_window", lambda value, period: window_end)
    yield


@pytest.fixture
def alice(db):
    return get_user_model().objects.create_user("alice", "alice@example.com", PASSWORD)


@pytest.fixture
def bob(db):
    return get_user_model().objects.create_user("bob", "bob@example.com", PASSWORD)


@pytest.fixture
def staff(db):
    return get_user_model().objects.create_user("staff", "staff@example.com", PASSWORD, is_staff=True)


def remove_test_sandboxes(docker_host: str = "") -> None:
    """Remove every container and volume this test instance made, by label (on the machine's
    engine, or on the one at ``docker_host``)."""
    import docker
    from django.conf import settings

    from sessions_app.runtime import btrfs

    client = docker.DockerClient(
        base_url=docker_host or settings.DOCKER_HOST, version=settings.DOCKER_API_VERSION
    )
    label = f"vibecode.instance={settings.VIBECODE_INSTANCE}"
    assert settings.VIBECODE_INSTANCE.startswith("test"), "refusing to clean a non-test instance"
    for container in client.api.containers(all=True, filters={"label": label}):
        client.api.remove_container(container["Id"], force=True)
    for volume in client.api.volumes(filters={"label": label}).get("Volumes") or []:
        client.api.remove_volume(volume["Name"], force=True)
        # A quota-limited workspace also has a btrfs subvolume behind its volume.
        device = (volume.get("Options") or {}).get("device") or ""
        if btrfs.is_under(device, settings.VIBECODE_WORKSPACES_DIR):
            btrfs.workspace_delete(path=device)
    client.close()


@pytest.fixture
def sandboxes() -> Iterator[None]:
    """For real-engine tests: whatever sandboxes the test made are gone afterwards."""
    yield
    remove_test_sandboxes()


@pytest.fixture(scope="session", autouse=True)
def _no_sandboxes_left_behind() -> Iterator[None]:
    yield
    try:
        remove_test_sandboxes()
    except Exception as exc:  # the engine may be the thing a test broke; say so, don't hide it
        print(f"could not remove test sandboxes: {exc}")


@pytest.fixture(scope="session", autouse=True)
def _bystander_keeps_running() -> Iterator[None]:
    """The suite never stops the machine's engine or a container it did not make.

    A container that is not labelled with this run's instance (as a running VibeCode's sandbox
    would be) is started before the first test; after the last one it must still be the same
    running container, and still answer an exec. A restart of the engine stops it, and its
    auto-remove then deletes it: either way this fails the run. Tests that must restart an
    engine use a private one (tests/resilience/conftest.py).
    """
    import docker
    from django.conf import settings

    try:
        client = docker.DockerClient(base_url=settings.DOCKER_HOST, version=settings.DOCKER_API_VERSION)
        client.ping()
        client.images.get(settings.VIBECODE_SANDBOX_IMAGE)
    except docker.errors.DockerException as exc:
        warnings.warn(
            f"no bystander check: the Docker engine or the sandbox image is missing ({exc})", stacklevel=1
        )
        yield
        return
    bystander = client.containers.run(
        settings.VIBECODE_SANDBOX_IMAGE,
        ["sleep", "43200"],  # gone by itself within 12 h if this run is killed
        name=f"vibecode-bystander-{settings.VIBECODE_INSTANCE}",
        labels={"vibecode.bystander-of": settings.VIBECODE_INSTANCE},
        network_mode="none",
        init=True,
        auto_remove=True,
        detach=True,
    )
    started_at = client.api.inspect_container(bystander.id)["State"]["StartedAt"]
    yield
    try:
        state = client.api.inspect_container(bystander.id)["State"]
    except docker.errors.NotFound:
        pytest.fail("a container this test run did not make was stopped: the bystander is gone")
    try:
        assert state["Running"] and state["StartedAt"] == started_at, (
            f"a container this test run did not make was stopped or restarted: {state}"
        )
        assert bystander.exec_run(["true"]).exit_code == 0
    finally:
        try:
            bystander.remove(force=True)
        except docker.errors.APIError as exc:  # 404/409: its auto-remove is already on it
            if exc.status_code not in (404, 409):
                raise
        client.close()


def bearer(user) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {RefreshToken.for_user(user).access_token}"}


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def alice_api(alice) -> APIClient:
    client = APIClient()
    client.credentials(**bearer(alice))
    return client


@pytest.fixture
def bob_api(bob) -> APIClient:
    client = APIClient()
    client.credentials(**bearer(bob))
    return client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_http(url: str, *, timeout: float = 60.0, process: subprocess.Popen | None = None) -> None:
    """Until ``url`` answers at all. A fresh server's first request loads most of Django and may
    take seconds on a loaded machine: each try waits up to 5 s, and a refused connection is
    retried at once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before answering {url}")
        try:
            httpx.get(url, timeout=max(0.5, min(5.0, deadline - time.monotonic())))
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing answered {url} within {timeout:.0f} s")


DAPHNE = [sys.executable, "-m", "daphne", "-v", "0"]


class Daphne:
    """A daphne process serving this checkout, for tests of the real wire."""

    def __init__(self, env: dict[str, str], *, log_path: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            # -v 0 as in scripts/serve.sh: no daphne access log (it would record query strings).
            [*DAPHNE, "-b", "127.0.0.1", "-p", str(self.port), "vibecode_project.asgi:application"],
            cwd=REPO_ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_for_http(self.url + "/health", process=self.process)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _test_database_url() -> str:
    from django.db import connection

    settings_dict = connection.settings_dict
    if connection.vendor != "postgresql":
        pytest.fail("live-server tests need PostgreSQL: run them through `make test`")
    return (
        f"postgresql://{settings_dict['USER']}@{settings_dict['HOST']}:{settings_dict['PORT']}/"
        f"{settings_dict['NAME']}"
    )


@pytest.fixture(scope="session")
def daphne_env(django_db_setup, django_db_blocker) -> dict[str, str]:
    """The environment of a daphne serving the test database (and the test Redis).

    Its statements wait at most 2 s for a lock: a browser's last request (the workbench saved on
    pagehide) can still be writing while a test's teardown truncates the tables, and then the
    request must give up rather than deadlock the teardown (scripts/test-services.sh sets the
    server's deadlock_timeout above this)."""
    with django_db_blocker.unblock():
        return {**os.environ, "DATABASE_URL": _test_database_url(), "PGOPTIONS": "-c lock_timeout=2000"}


@pytest.fixture(scope="session")
def daphne_server(daphne_env, tmp_path_factory) -> Iterator[Daphne]:
    """One daphne for the session, on the test database (tests use ``transactional_db``)."""
    server = Daphne(daphne_env, log_path=tmp_path_factory.mktemp("daphne") / "daphne.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def browser_type_launch_args() -> dict:
    """Playwright drives Debian's Chromium; `playwright install` is never run."""
    return {
        "executable_path": "/usr/bin/chromium",
        "args": [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ],
    }


def pytest_collection_modifyitems(config, items) -> None:
    """Order: ordinary tests, then those that restart shared servers (``disruptive``), then the
    browser tests. Playwright's sync API keeps an event loop running in the main thread from its
    first test to the end of the session, and no asyncio test can run after that."""
    items.sort(
        key=lambda item: (
            item.get_closest_marker("browser") is not None,
            item.get_closest_marker("disruptive") is not None,
        )
    )


@pytest.fixture(scope="session")
def private_engine(tmp_path_factory) -> Iterator[PrivateEngine]:
    """A second dockerd of the tests' own (scripts/private-dockerd.sh: its own socket, data-root,
    exec-root, pid file and containerd) holding the sandbox image, for the tests that kill or
    restart an engine and for engine ``b`` of the many-engines tests: never the machine's engine.
    Loaded once per test session; destroyed, with all it ran, at the end."""
    engine = PrivateEngine(tmp_path_factory.mktemp("private-engine"))
    try:
        engine.start()
        engine.load(settings.VIBECODE_SANDBOX_IMAGE)
        yield engine
    finally:
        engine.destroy()
