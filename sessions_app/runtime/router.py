"""Many engines behind one runtime: :class:`EngineRouter` sends each call to the engine its ref,
spec or helper spec names (``engine``), through one cached backend runtime per engine.

Where an engine lives (its URL and TLS directory) is asked of ``resolve(name)``, given by
``get_runtime()``: ``local`` is ``DOCKER_HOST``, the others come from ``VIBECODE_ENGINES`` or
the ``Engine`` rows (``sessions_app.selectors.engine_address``). A runtime is kept per (name, URL,
TLS directory): an engine whose address changes gets a new client, one that keeps it keeps its
client, its helpers and its tunnels. With only ``local`` in use this is a pass-through.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from sessions_app.runtime.base import (
    PortsReport,
    ProcessStream,
    SandboxInfo,
    SandboxRef,
    SandboxRuntime,
    SandboxSpec,
    SandboxStats,
    SandboxStatus,
    TerminalStream,
    VolumeHelperSpec,
)
from sessions_app.runtime.helper import HelperClient
from sessions_app.runtime.tunnel import Tunnel

LOCAL = "local"
# How long an engine's resolved address is trusted before it is asked again (an admin edit).
RESOLVE_SECONDS = 10.0

# An engine's address: (docker URL, TLS directory); "" as the URL means DOCKER_HOST.
EngineAddress = tuple[str, str]
Resolver = Callable[[str], EngineAddress]
Factory = Callable[[str, str, str], SandboxRuntime]


class EngineRouter(SandboxRuntime):
    def __init__(self, *, factory: Factory, resolve: Resolver) -> None:
        self._factory = factory
        self._resolve = resolve
        self._lock = threading.Lock()
        self._runtimes: dict[str, tuple[EngineAddress, SandboxRuntime]] = {}
        self._addresses: dict[str, tuple[float, EngineAddress]] = {}

    def _address(self, name: str) -> EngineAddress:
        if name == LOCAL:
            return ("", "")
        now = time.monotonic()
        known = self._addresses.get(name)
        if known is not None and now - known[0] < RESOLVE_SECONDS:
            return known[1]
        address = self._resolve(name)
        self._addresses[name] = (now, address)
        return address

    def engine(self, name: str = LOCAL) -> SandboxRuntime:
        """The runtime of one engine (made on first use, remade when its address changed).
        An unknown engine raises ``EngineUnavailable``."""
        address = self._address(name)
        with self._lock:
            known = self._runtimes.get(name)
            if known is not None and known[0] == address:
                return known[1]
            runtime = self._factory(name, *address)
            self._runtimes[name] = (address, runtime)
            return runtime

    # --- per sandbox ----------------------------------------------------------------------------

    @property
    def disk_quotas(self) -> bool:
        return self.engine().disk_quotas

    def helper(self, ref: SandboxRef) -> HelperClient:
        return self.engine(ref.engine).helper(ref)

    def helper_private(self, ref: SandboxRef) -> HelperClient:
        return self.engine(ref.engine).helper_private(ref)

    def tunnel(self, ref: SandboxRef, *, owner: str = "") -> Tunnel:
        return self.engine(ref.engine).tunnel(ref, owner=owner)

    def tunnel_if_open(self, ref: SandboxRef) -> Tunnel | None:
        return self.engine(ref.engine).tunnel_if_open(ref)

    def open_language_server(self, ref: SandboxRef, *, language: str, argv: Sequence[str]) -> ProcessStream:
        return self.engine(ref.engine).open_language_server(ref, language=language, argv=argv)

    def listening_ports(self, ref: SandboxRef) -> PortsReport:
        return self.engine(ref.engine).listening_ports(ref)

    def create(self, spec: SandboxSpec) -> SandboxRef:
        return self.engine(spec.engine).create(spec)

    def start(self, ref: SandboxRef) -> None:
        self.engine(ref.engine).start(ref)

    def stop(self, ref: SandboxRef) -> None:
        self.engine(ref.engine).stop(ref)

    def status(self, ref: SandboxRef) -> SandboxStatus:
        return self.engine(ref.engine).status(ref)

    def open_terminal(self, ref: SandboxRef, *, terminal_id: str, cols: int, rows: int) -> TerminalStream:
        return self.engine(ref.engine).open_terminal(ref, terminal_id=terminal_id, cols=cols, rows=rows)

    def open_stream(self, ref: SandboxRef, argv: Sequence[str], *, workdir: str = "/") -> ProcessStream:
        return self.engine(ref.engine).open_stream(ref, argv, workdir=workdir)

    def stats(self, ref: SandboxRef) -> SandboxStats:
        return self.engine(ref.engine).stats(ref)

    def remove(self, ref: SandboxRef, *, volume: bool) -> None:
        self.engine(ref.engine).remove(ref, volume=volume)

    def adopt(
        self,
        ref: SandboxRef,
        *,
        name: str,
        memory_mb: int | None = None,
        cpus: float | None = None,
        pids: int | None = None,
        disk_mb: int | None = None,
    ) -> SandboxRef:
        return self.engine(ref.engine).adopt(
            ref, name=name, memory_mb=memory_mb, cpus=cpus, pids=pids, disk_mb=disk_mb
        )

    def pause(self, ref: SandboxRef) -> bool:
        return self.engine(ref.engine).pause(ref)

    def unpause(self, ref: SandboxRef) -> None:
        self.engine(ref.engine).unpause(ref)

    def volume_has_files(self, spec: VolumeHelperSpec) -> bool:
        return self.engine(spec.engine).volume_has_files(spec)

    def export_volume(self, spec: VolumeHelperSpec) -> Iterator[bytes]:
        return self.engine(spec.engine).export_volume(spec)

    def import_volume(self, spec: VolumeHelperSpec, stream: Iterable[bytes], *, replace: bool) -> None:
        self.engine(spec.engine).import_volume(spec, stream, replace=replace)

    # --- engine-wide: one engine, ``local`` unless named -----------------------------------------

    def ping(self, *, engine: str = LOCAL) -> str:
        return self.engine(engine).ping()

    def list_sandboxes(self, labels: Mapping[str, str], *, engine: str = LOCAL) -> list[SandboxInfo]:
        return self.engine(engine).list_sandboxes(labels)

    def engine_memory_bytes(self, *, engine: str = LOCAL) -> int | None:
        return self.engine(engine).engine_memory_bytes()

    def image_id(self, image: str, *, engine: str = LOCAL) -> str | None:
        return self.engine(engine).image_id(image)

    def image_labels(self, image: str, *, engine: str = LOCAL) -> dict[str, str]:
        return self.engine(engine).image_labels(image)

    def image_size(self, image: str, *, engine: str = LOCAL) -> int:
        return self.engine(engine).image_size(image)

    def image_remove_untagged(self, image_id: str, *, engine: str = LOCAL) -> str:
        return self.engine(engine).image_remove_untagged(image_id)

    def image_build(
        self,
        *,
        context_dir: str,
        tag: str,
        buildargs: Mapping[str, str],
        nocache: bool,
        labels: Mapping[str, str] | None = None,
        engine: str = LOCAL,
    ) -> Iterator[str]:
        return self.engine(engine).image_build(
            context_dir=context_dir, tag=tag, buildargs=buildargs, nocache=nocache, labels=labels
        )
