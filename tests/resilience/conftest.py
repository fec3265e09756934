"""A private Docker engine for the tests that stop or restart the engine.

Restarting the machine's engine would stop every container on it, a running VibeCode's
sandboxes included. These tests get an engine of their own instead (scripts/private-dockerd.sh:
own socket, data-root, exec-root, containerd), with the sandbox image copied into it once per
test session, and point the servers they start at it with ``DOCKER_HOST``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.conf import settings

from tests.private_engine import PrivateEngine


@pytest.fixture(scope="session")
def private_engine(tmp_path_factory) -> Iterator[PrivateEngine]:
    """A running private engine holding the sandbox image; destroyed, with all it ran, at the end."""
    engine = PrivateEngine(tmp_path_factory.mktemp("dockerd"))
    try:
        engine.start()
        engine.load(settings.VIBECODE_SANDBOX_IMAGE)
        yield engine
    finally:
        engine.destroy()
