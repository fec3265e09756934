"""Engine ``b``: a second, private Docker engine for the many-engines tests (docs/engines.md)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sessions_app.models import Engine
from tests.conftest import remove_test_sandboxes
from tests.private_engine import PrivateEngine


@pytest.fixture
def engine_b(db, private_engine, sandboxes) -> Iterator[PrivateEngine]:
    """Engine ``b`` registered (an Engine row, as staff would add it) beside ``local``; this
    test's sandboxes on both engines are removed afterwards."""
    private_engine.start()  # a test may have killed it
    Engine.objects.update_or_create(name="b", defaults={"docker_url": private_engine.docker_host})
    yield private_engine
    private_engine.start()
    remove_test_sandboxes(private_engine.docker_host)
