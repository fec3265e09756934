"""The runtime interface, modelled on JupyterHub's Spawner.

A runtime owns the life of sandboxes. The database keeps only what a runtime returns (object id,
object name, volume name); the runtime never re-derives a live object's name from a template.
Every method is synchronous and may block: async callers wrap them in ``sync_to_async``.
"""

from __future__ import annotations

import abc


class SandboxRuntime(abc.ABC):
    @abc.abstractmethod
    def ping(self) -> str:
        """Return a one-line description of the engine, or raise ``RuntimeUnavailable``."""
