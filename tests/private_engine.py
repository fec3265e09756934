"""A private Docker engine in a folder of its own (scripts/private-dockerd.sh: own socket,
data-root, exec-root, pid files and containerd), for tests that stop, kill or restart an engine,
or that need a second one. Never the machine's engine."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import docker
from django.conf import settings

REPO_ROOT = Path(__file__).resolve().parent.parent


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

    def load(self, *images: str) -> None:
        self._run("load", *images, timeout=300)

    def destroy(self) -> None:
        self._run("destroy")

    def kill_dockerd(self) -> None:
        """SIGKILL this engine's dockerd (by its pid file), as a crash would: its containerd and
        containers live on, and nothing answers on the socket until :meth:`start`."""
        pid = int((self.directory / "docker.pid").read_text().strip())
        assert Path(f"/proc/{pid}/comm").read_text().strip() == "dockerd"
        os.kill(pid, signal.SIGKILL)
        for _ in range(200):
            if not Path(f"/proc/{pid}").exists():
                return
            time.sleep(0.05)
        raise AssertionError(f"dockerd {pid} did not die")

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.docker_host, version=settings.DOCKER_API_VERSION)
