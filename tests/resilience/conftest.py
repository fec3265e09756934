"""A private Docker engine for the tests that stop or restart the engine.

Restarting the machine's engine would stop every container on it, a running VibeCode's
sandboxes included. These tests get an engine of their own instead (scripts/private-dockerd.sh:
own socket, data-root, exec-root, containerd), with the sandbox image copied into it once per
test session, and point the servers they start at it with ``DOCKER_HOST``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
from django.conf import settings

from tests.conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "private-dockerd.sh"


@dataclass
class PrivateEngine:
    directory: Path

    @property
    def docker_host(self) -> str:
        return f"unix://{self.directory}/docker.sock"

    def _run(self, *args: str, timeout: float = 180) -> None:
        result = subprocess.run(
            [str(SCRIPT), *args[:1], str(self.directory), *args[1:]],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert result.returncode == 0, f"private-dockerd.sh {args[0]} failed:\n{result.stderr}"

    def start(self) -> None:
        self._run("start")

    def stop(self) -> None:
        self._run("stop")

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.docker_host, version=settings.DOCKER_API_VERSION)


@pytest.fixture(scope="session")
def private_engine(tmp_path_factory) -> Iterator[PrivateEngine]:
    """A running private engine holding the sandbox image; destroyed, with all it ran, at the end."""
    engine = PrivateEngine(tmp_path_factory.mktemp("dockerd"))
    try:
        engine.start()
        engine._run("load", settings.VIBECODE_SANDBOX_IMAGE, timeout=300)
        yield engine
    finally:
        engine._run("destroy")
