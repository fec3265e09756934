"""The sandbox runtime: where sessions' containers actually live.

``get_runtime()`` returns an :class:`~sessions_app.runtime.router.EngineRouter` over the
configured backend (``VIBECODE_RUNTIME_BACKEND``; only ``docker`` today), one backend runtime per
engine. Callers depend on :class:`sessions_app.runtime.base.SandboxRuntime`, never on Docker.
"""

from __future__ import annotations

from functools import cache

from django.conf import settings
from django.utils.module_loading import import_string

from sessions_app.runtime.base import SandboxRuntime
from sessions_app.runtime.router import EngineRouter

BACKENDS = {"docker": "sessions_app.runtime.docker.DockerRuntime"}
# Where an engine other than local lives: VIBECODE_ENGINES, else its Engine row.
ENGINE_RESOLVER = "sessions_app.selectors.engine_address"


@cache
def get_runtime() -> SandboxRuntime:
    backend_cls = import_string(BACKENDS[settings.VIBECODE_RUNTIME_BACKEND])

    def factory(name: str, base_url: str, tls_dir: str) -> SandboxRuntime:
        runtime: SandboxRuntime = backend_cls(engine=name, base_url=base_url, tls_dir=tls_dir)
        return runtime

    return EngineRouter(factory=factory, resolve=import_string(ENGINE_RESOLVER))
