"""Engine ``b``: a second, private Docker engine for the many-engines tests (docs/engines.md)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.conf import settings

from sessions_app.models import Engine
from tests.conftest import remove_test_sandboxes
from tests.private_engine import PrivateEngine


@pytest.fixture(scope="session")
def engine_b_daemon(tmp_path_factory) -> Iterator[PrivateEngine]:
    """A second dockerd (scripts/private-dockerd.sh: its own socket, data-root, exec-root, pid
    file and containerd) holding the sandbox image; destroyed, with all it ran, at the end."""
    engine = PrivateEngine(tmp_path_factory.mktemp("engine-b"))
    try:
        engine.start()
        engine.load(settings.VIBECODE_SANDBOX_IMAGE)
        yield engine
    finally:
        engine.destroy()


@pytest.fixture
def engine_b(db, engine_b_daemon, sandboxes) -> Iterator[PrivateEngine]:
    """Engine ``b`` registered (an Engine row, as staff would add it) beside ``local``; this
    test's sandboxes on both engines are removed afterwards."""
    engine_b_daemon.start()  # a test may have killed it
    Engine.objects.update_or_create(name="b", defaults={"docker_url": engine_b_daemon.docker_host})
    yield engine_b_daemon
    engine_b_daemon.start()
    remove_test_sandboxes(engine_b_daemon.docker_host)
