"""An in-memory :class:`SandboxRuntime` for unit tests of the services' logic (claims, state
versions, reconcile, cleanup, backups) without Docker. It keeps the contract in
``sessions_app/runtime/base.py``: idempotent methods, ``SandboxNotFound``/``SandboxNotRunning``
where the contract says, and only ``remove(volume=True)`` deletes a volume.

It is never a substitute for the real engine: every behaviour tested here is also tested against
Docker in the other test files. Use :func:`install` to make the services use it.
"""

from __future__ import annotations

import io
import tarfile
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from sessions_app.runtime.base import (
    ListeningPort,
    PortsReport,
    ProcessStream,
    SandboxInfo,
    SandboxRef,
    SandboxRuntime,
    SandboxSpec,
    SandboxState,
    SandboxStats,
    SandboxStatus,
    TerminalStream,
    VolumeHelperSpec,
)
from sessions_app.runtime.errors import (
    RuntimeUnavailable,
    SandboxNotFound,
    SandboxNotRunning,
    VolumeNotEmpty,
    VolumeNotFound,
)

# Every module that calls get_runtime() (services only, and health).
SERVICE_MODULES = (
    "sessions_app.services",
    "sessions_app.operations",
    "sessions_app.backups",
    "sessions_app.monitoring",
)


@dataclass
class FakeContainer:
    id: str
    name: str
    volume_name: str
    labels: dict[str, str]
    state: str = "running"  # running, paused, stopped


@dataclass
class FakeRuntime(SandboxRuntime):
    containers: dict[str, FakeContainer] = field(default_factory=dict)
    volumes: dict[str, dict[str, bytes]] = field(default_factory=dict)  # name -> {path: content}
    calls: list[str] = field(default_factory=list)
    # Set to an exception to make the next call of that method raise it (once).
    fail: dict[str, Exception] = field(default_factory=dict)
    reachable: bool = True
    listening: list[ListeningPort] = field(default_factory=list)

    # --- bookkeeping ----------------------------------------------------------------------------

    def _call(self, method: str) -> None:
        self.calls.append(method)
        if not self.reachable:
            raise RuntimeUnavailable()
        if method in self.fail:
            raise self.fail.pop(method)

    def _find(self, ref: SandboxRef) -> FakeContainer | None:
        if ref.object_id in self.containers:
            return self.containers[ref.object_id]
        return next(
            (c for c in self.containers.values() if ref.object_name and c.name == ref.object_name), None
        )

    def container_named(self, name: str) -> FakeContainer | None:
        return next((c for c in self.containers.values() if c.name == name), None)

    # --- life cycle -----------------------------------------------------------------------------

    def ping(self) -> str:
        self._call("ping")
        return "Fake runtime"

    def create(self, spec: SandboxSpec) -> SandboxRef:
        self._call("create")
        self.volumes.setdefault(spec.volume_name, {})
        container = self.container_named(spec.name)
        if container is None:
            container = FakeContainer(uuid.uuid4().hex * 2, spec.name, spec.volume_name, dict(spec.labels))
            self.containers[container.id] = container
        container.state = "running"
        return SandboxRef(container.id, spec.name, spec.volume_name)

    def start(self, ref: SandboxRef) -> None:
        self._call("start")
        container = self._find(ref)
        if container is None:
            raise SandboxNotFound()
        if container.state == "stopped":
            container.state = "running"

    def stop(self, ref: SandboxRef) -> None:
        self._call("stop")
        container = self._find(ref)
        if container is not None:
            container.state = "stopped"

    def status(self, ref: SandboxRef) -> SandboxStatus:
        self._call("status")
        container = self._find(ref)
        volume_exists = ref.volume_name in self.volumes
        if container is None:
            return SandboxStatus(state=SandboxState.MISSING, volume_exists=volume_exists)
        running = container.state in {"running", "paused"}
        return SandboxStatus(
            state=SandboxState.RUNNING if running else SandboxState.STOPPED,
            volume_exists=volume_exists,
            object_id=container.id,
        )

    def remove(self, ref: SandboxRef, *, volume: bool) -> None:
        self._call("remove")
        for container in [
            c for c in self.containers.values() if c.id == ref.object_id or c.name == ref.object_name
        ]:
            del self.containers[container.id]
        if volume:
            self.volumes.pop(ref.volume_name, None)

    def image_id(self, image: str) -> str | None:
        self._call("image_id")
        return f"sha256:{image}"

    def image_labels(self, image: str) -> dict[str, str]:
        return {}

    def image_size(self, image: str) -> int:
        return 0

    def image_remove_untagged(self, image_id: str) -> str:
        return "still tagged"

    def image_build(
        self,
        *,
        context_dir: str,
        tag: str,
        buildargs: Mapping[str, str],
        nocache: bool,
        labels: Mapping[str, str] | None = None,
    ) -> Iterator[str]:
        raise NotImplementedError("the fake runtime builds no images")

    def list_sandboxes(self, labels: Mapping[str, str]) -> list[SandboxInfo]:
        self._call("list_sandboxes")
        return [
            SandboxInfo(c.id, c.name, dict(c.labels), c.state == "running")
            for c in self.containers.values()
            if all(c.labels.get(key) == value for key, value in labels.items())
        ]

    # --- running things -------------------------------------------------------------------------

    def _running(self, ref: SandboxRef) -> FakeContainer:
        container = self._find(ref)
        if container is None or container.state != "running":
            raise SandboxNotRunning()
        return container

    def open_terminal(self, ref: SandboxRef, *, terminal_id: str, cols: int, rows: int) -> TerminalStream:
        self._call("open_terminal")
        self._running(ref)
        raise NotImplementedError("the fake runtime runs no processes; terminals are tested on Docker")

    def open_stream(self, ref: SandboxRef, argv: Sequence[str], *, workdir: str = "/") -> ProcessStream:
        self._call("open_stream")
        self._running(ref)
        raise NotImplementedError("the fake runtime runs no processes; the helper is tested on Docker")

    def listening_ports(self, ref: SandboxRef) -> PortsReport:
        """What ``listening`` says listens in every sandbox (the fake runs no processes)."""
        self._call("listening_ports")
        self._running(ref)
        return PortsReport(ports=list(self.listening), truncated=False)

    def stats(self, ref: SandboxRef) -> SandboxStats:
        self._call("stats")
        self._running(ref)
        return SandboxStats(cpu_percent=0.0, memory_bytes=1 << 20, memory_limit_bytes=1 << 30, pids=1)

    # --- workspace volumes ----------------------------------------------------------------------

    def pause(self, ref: SandboxRef) -> bool:
        self._call("pause")
        container = self._find(ref)
        if container is None or container.state == "stopped":
            raise SandboxNotRunning()
        if container.state == "paused":
            return False
        container.state = "paused"
        return True

    def unpause(self, ref: SandboxRef) -> None:
        self._call("unpause")
        container = self._find(ref)
        if container is not None and container.state == "paused":
            container.state = "running"

    def volume_has_files(self, spec: VolumeHelperSpec) -> bool:
        self._call("volume_has_files")
        return bool(self.volumes.get(spec.volume_name))

    def export_volume(self, spec: VolumeHelperSpec) -> Iterator[bytes]:
        self._call("export_volume")
        if spec.volume_name not in self.volumes:
            raise VolumeNotFound()
        packed = io.BytesIO()
        with tarfile.open(fileobj=packed, mode="w") as tar:
            for path, content in sorted(self.volumes[spec.volume_name].items()):
                info = tarfile.TarInfo(f"./{path}")
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
        yield packed.getvalue()

    def import_volume(self, spec: VolumeHelperSpec, stream: Iterable[bytes], *, replace: bool) -> None:
        self._call("import_volume")
        if self.volumes.get(spec.volume_name) and not replace:
            raise VolumeNotEmpty()
        files: dict[str, bytes] = {}
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream)), mode="r:") as tar:
            for member in tar:
                if member.isfile():
                    files[member.name.removeprefix("./")] = tar.extractfile(member).read()  # type: ignore[union-attr]
        self.volumes[spec.volume_name] = files


def install(monkeypatch: object) -> FakeRuntime:
    """Make every service module's ``get_runtime()`` answer a new fake; returns it."""
    runtime = FakeRuntime()
    for module in SERVICE_MODULES:
        monkeypatch.setattr(f"{module}.get_runtime", lambda: runtime)  # type: ignore[attr-defined]
    return runtime
