"""The sandbox runtime: where sessions' containers actually live.

``get_runtime()`` returns the configured backend (``VIBECODE_RUNTIME_BACKEND``; only ``docker``
today). Callers depend on :class:`sessions_app.runtime.base.SandboxRuntime`, never on Docker.
"""

from __future__ import annotations

from functools import cache

from django.conf import settings
from django.utils.module_loading import import_string

from sessions_app.runtime.base import SandboxRuntime

BACKENDS = {"docker": "sessions_app.runtime.docker.DockerRuntime"}


@cache
def get_runtime() -> SandboxRuntime:
    backend_cls = import_string(BACKENDS[settings.VIBECODE_RUNTIME_BACKEND])
    runtime: SandboxRuntime = backend_cls()
    return runtime
