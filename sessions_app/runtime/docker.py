"""The Docker backend of the sandbox runtime, over the Docker API socket only."""

from __future__ import annotations

import threading

import docker
from django.conf import settings

from sessions_app.runtime.base import SandboxRuntime
from sessions_app.runtime.errors import RuntimeUnavailable

_client_lock = threading.Lock()
_client: docker.DockerClient | None = None


def docker_client() -> docker.DockerClient:
    """The one shared Docker client of this process (its HTTP pool is thread-safe)."""
    global _client
    with _client_lock:
        if _client is None:
            _client = docker.DockerClient(
                base_url=settings.DOCKER_HOST,
                version=settings.DOCKER_API_VERSION,
                timeout=int(settings.DOCKER_TIMEOUT_SECONDS),
                max_pool_size=32,
            )
        return _client


class DockerRuntime(SandboxRuntime):
    def ping(self) -> str:
        client = docker_client()
        try:
            version = client.api.version()
        except docker.errors.DockerException as exc:
            raise RuntimeUnavailable() from exc
        except OSError as exc:  # requests' ConnectionError is an OSError
            raise RuntimeUnavailable() from exc
        return f"Docker Engine {version.get('Version', '?')} (API {version.get('ApiVersion', '?')})"
