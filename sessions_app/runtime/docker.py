"""The Docker backend of the sandbox runtime, over the Docker API socket only.

No code here connects to a container's IP: exec, files and TTYs all travel through the engine's
API. Docker's 404 and 409 on stop/remove mean "already done" (see the contract in ``base.py``).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import select
import socket
import struct
import tarfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import docker
import requests
from django.conf import settings
from docker.errors import APIError, DockerException, ImageNotFound, NotFound

from core_app.metrics import DOCKER_ERRORS
from sessions_app import specs as spec_helpers
from sessions_app.runtime import btrfs
from sessions_app.runtime.base import (
    ImageBuildFailed,
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
    EngineUnavailable,
    RuntimeFailure,
    RuntimeUnavailable,
    SandboxNotFound,
    SandboxNotRunning,
    VolumeNotEmpty,
    VolumeNotFound,
)
from sessions_app.runtime.helper import HELPER_WORKDIR, HelperGone
from sessions_app.runtime.pty import pty_attach_argv

logger = logging.getLogger(__name__)

LOCAL = "local"


_client_lock = threading.Lock()
_client: docker.DockerClient | None = None


def docker_client_for(
    base_url: str, *, tls_dir: str = "", timeout: float | None = None
) -> docker.DockerClient:
    """A Docker client for one engine: ``unix://`` or ``tcp://``, the latter with mutual TLS
    when ``tls_dir`` holds ca.pem, cert.pem and key.pem."""
    tls: docker.tls.TLSConfig | bool = False
    if tls_dir:
        tls = docker.tls.TLSConfig(
            client_cert=(os.path.join(tls_dir, "cert.pem"), os.path.join(tls_dir, "key.pem")),
            ca_cert=os.path.join(tls_dir, "ca.pem"),
            verify=True,
        )
    return docker.DockerClient(
        base_url=base_url,
        version=settings.DOCKER_API_VERSION,
        timeout=int(timeout or settings.DOCKER_TIMEOUT_SECONDS),
        max_pool_size=32,
        tls=tls,
    )


def _docker_client() -> docker.DockerClient:
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


@contextlib.contextmanager
def engine_errors(what: str, engine: str = LOCAL) -> Iterator[None]:
    """Turn transport failures into ``RuntimeUnavailable`` (``EngineUnavailable`` naming the
    engine, for engines other than ``local``) and engine refusals into ``RuntimeFailure``.
    ``NotFound`` passes through for the caller to interpret."""

    def unavailable() -> RuntimeUnavailable:
        return RuntimeUnavailable() if engine == LOCAL else EngineUnavailable.naming(engine)

    try:
        yield
    except NotFound:
        raise
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError) as exc:
        DOCKER_ERRORS.labels(kind="unreachable").inc()
        logger.warning("docker engine %s unreachable during %s: %s", engine, what, type(exc).__name__)
        raise unavailable() from exc
    except APIError as exc:
        DOCKER_ERRORS.labels(kind="refused").inc()
        logger.warning("docker refused %s: %s", what, exc.explanation or exc)
        raise RuntimeFailure(f"The container engine refused to {what}: {exc.explanation or exc}") from exc
    except DockerException as exc:
        DOCKER_ERRORS.labels(kind="other").inc()
        logger.warning("docker error during %s: %s", what, exc)
        raise unavailable() from exc


def docker_create_kwargs(spec: SandboxSpec) -> dict[str, Any]:
    """The ``containers.create`` arguments for a spec. Pure: unit-tested without Docker."""
    host_config: dict[str, Any] = {
        "mem_limit": spec.memory_mb * 1024 * 1024,
        "memswap_limit": spec.memory_mb * 1024 * 1024,  # swap the same: no swap beyond the limit
        "nano_cpus": int(spec.cpus * 1_000_000_000),
        "pids_limit": spec.pids,
        "security_opt": ["no-new-privileges:true"],
        "network_mode": spec.network,
        "read_only": spec.read_only_root,
        "tmpfs": {"/tmp": f"rw,exec,nosuid,nodev,size={spec.tmp_size_mb}m,mode=1777"},
        "ulimits": [docker.types.Ulimit(name="nofile", soft=spec.nofile, hard=spec.nofile)],
        "log_config": docker.types.LogConfig(
            type="json-file", config={"max-size": spec.log_max_size, "max-file": "1"}
        ),
        "init": True,  # docker-init reaps zombies and forwards SIGTERM: stop takes milliseconds
        "volumes": {
            spec.volume_name: {"bind": spec.workdir, "mode": "rw"},
            **{host: {"bind": inside, "mode": "ro"} for host, inside in spec.read_only_files.items()},
        },
    }
    if spec.drop_capabilities:
        host_config["cap_drop"] = ["ALL"]
    if spec.runtime != "runc":
        host_config["runtime"] = spec.runtime
    return {
        "image": spec.image,
        # HOME lives on the workspace volume; make sure it exists on every start.
        "command": ["sh", "-c", 'mkdir -p "$HOME" && exec sleep infinity'],
        "name": spec.name,
        "hostname": "vibecode",
        "labels": dict(spec.labels),
        "user": spec.user,
        "working_dir": spec.workdir,
        "environment": dict(spec.env),
        "detach": True,
        "stop_signal": "SIGTERM",
        **host_config,
    }


def docker_volume_helper_kwargs(
    spec: VolumeHelperSpec, *, writable: bool, command: Sequence[str] = ("true",)
) -> dict[str, Any]:
    """The ``containers.create`` arguments of a backup or restore helper. Pure: unit-tested
    without Docker. Hardened like a sandbox; only the volume is writable, and only to restore."""
    memory = spec.memory_mb * 1024 * 1024
    return {
        "image": spec.image,
        "command": list(command),
        "user": spec.user,
        "labels": dict(spec.labels),
        "network_mode": "none",
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "read_only": True,
        "mem_limit": memory,
        "memswap_limit": memory,
        "pids_limit": spec.pids,
        "nano_cpus": int(spec.cpus * 1_000_000_000),
        "log_config": docker.types.LogConfig(type="json-file", config={"max-size": "1m", "max-file": "1"}),
        "volumes": {spec.volume_name: {"bind": spec.mount, "mode": "rw" if writable else "ro"}},
    }


class _ChunkReader(io.RawIOBase):
    """A file to read from an iterator of byte chunks (for ``tarfile``'s stream mode)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = chunk
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


class DockerTerminalStream(TerminalStream):
    """A ``pty-attach`` exec without a TTY: Docker multiplexes its stdout (the terminal's bytes)
    and stderr (a JSON line per event) with 8-byte headers (stream, size)."""

    EVENTS_MAX = 64 * 1024

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self.sock = raw._sock
        self._buffer = bytearray()
        self._events = bytearray()
        self._closed = False

    def decode(self, data: bytes | memoryview) -> tuple[bytes, list[dict[str, Any]]]:
        buffer = self._buffer
        buffer += data
        output: list[bytes] = []
        start = 0
        with memoryview(buffer) as view:
            while len(buffer) - start >= 8:
                kind = buffer[start]
                (size,) = struct.unpack_from(">I", buffer, start + 4)
                if len(buffer) - start < 8 + size:
                    break
                if kind == 1:
                    output.append(bytes(view[start + 8 : start + 8 + size]))
                elif kind == 2:
                    self._events += view[start + 8 : start + 8 + size]
                else:
                    raise ValueError(f"a stream {kind} frame")
                start += 8 + size
        del buffer[:start]
        events: list[dict[str, Any]] = []
        while (end := self._events.find(b"\n")) >= 0:
            line = bytes(self._events[:end])
            del self._events[: end + 1]
            try:
                event = json.loads(line)
            except ValueError:
                event = None
            if isinstance(event, dict):
                events.append(event)
            else:
                logger.warning("terminal attach said: %s", line[-500:].decode(errors="replace"))
        if len(self._events) > self.EVENTS_MAX:
            raise ValueError("an event line too long")
        return b"".join(output), events

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._raw.close()


class DockerProcessStream(ProcessStream):
    """Demultiplexes Docker's non-TTY attach stream: 8-byte headers (stream, size), then data."""

    def __init__(
        self, raw: Any, *, name: str, client: docker.DockerClient | None = None, exec_id: str = ""
    ) -> None:
        self._raw = raw
        self._sock: socket.socket = raw._sock
        self._sock.settimeout(None)
        self._buffer = bytearray()
        self._name = name
        self._client = client
        self._exec_id = exec_id
        self._closed = False

    def write(self, data: bytes) -> None:
        self._sock.sendall(data)

    def send_some(self, data: memoryview, *, timeout: float) -> int:
        # The socket stays blocking for the reader thread; this send alone does not block.
        try:
            return self._sock.send(data, socket.MSG_DONTWAIT)
        except BlockingIOError:
            pass
        poller = select.poll()
        poller.register(self._sock.fileno(), select.POLLOUT)
        if not poller.poll(int(timeout * 1000)):
            return 0
        try:
            return self._sock.send(data, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return 0

    def exited(self) -> bool:
        if self._client is None or not self._exec_id:
            return False
        try:
            return not self._client.api.exec_inspect(self._exec_id).get("Running", True)
        except NotFound:
            return True  # its container is gone
        except (requests.exceptions.RequestException, DockerException):
            return False  # the engine did not answer: unknown

    def read(self) -> bytes:
        while True:
            while len(self._buffer) >= 8:
                kind, size = self._buffer[0], struct.unpack(">I", self._buffer[4:8])[0]
                if len(self._buffer) < 8 + size:
                    break
                data = bytes(self._buffer[8 : 8 + size])
                del self._buffer[: 8 + size]
                if kind == 1:
                    return data
                logger.warning("%s said on stderr: %s", self._name, data[-500:].decode(errors="replace"))
            try:
                chunk = self._sock.recv(262144)
            except OSError:
                chunk = b""
            if not chunk:
                return b""
            self._buffer += chunk

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._raw.close()


class DockerRuntime(SandboxRuntime):
    """One engine. ``local`` (the default) uses the process's shared client on ``DOCKER_HOST``;
    another engine gets a client of its own for its URL (and TLS directory)."""

    def __init__(self, *, engine: str = LOCAL, base_url: str = "", tls_dir: str = "") -> None:
        self.engine = engine
        self._base_url = base_url
        self._tls_dir = tls_dir
        self._own_client: docker.DockerClient | None = None
        # Previous (cpu_total, system_total) per container, for CPU percent between two calls.
        self._cpu_samples: dict[str, tuple[int, int]] = {}
        # Volume name -> the quota-limited subvolume behind it ("" for a plain volume).
        self._volume_paths: dict[str, str] = {}
        self._engine_memory: int | None = None
        if not self.disk_quotas:
            logger.warning(
                "VIBECODE_WORKSPACES_DIR is not set: workspaces get plain volumes with no disk quota"
            )

    @property
    def client(self) -> docker.DockerClient:
        if not self._base_url:
            return _docker_client()
        if self._own_client is None:
            self._own_client = docker_client_for(self._base_url, tls_dir=self._tls_dir)
        return self._own_client

    def ping(self) -> str:
        with engine_errors("answer", self.engine):
            version = self.client.api.version()
        return f"Docker Engine {version.get('Version', '?')} (API {version.get('ApiVersion', '?')})"

    # --- life cycle -----------------------------------------------------------------------------

    # --- workspace volumes (with a disk quota when VIBECODE_WORKSPACES_DIR is set) ---------------

    @property
    def disk_quotas(self) -> bool:
        return bool(settings.VIBECODE_WORKSPACES_DIR)

    def _create_volume(self, spec: SandboxSpec) -> None:
        """A plain local volume, or (with quotas) one bound to a new quota-limited btrfs
        subvolume of the same name. An existing volume is kept as it is."""
        api = self.client.api
        root = settings.VIBECODE_WORKSPACES_DIR
        with engine_errors("create the workspace volume", self.engine):
            if not (self.disk_quotas and spec.disk_mb):
                api.create_volume(name=spec.volume_name, labels=dict(spec.labels))
                return
            try:
                api.inspect_volume(spec.volume_name)
                return
            except NotFound:
                pass
            try:
                uid, gid = spec_helpers.owner_ids(spec.user)
            except ValueError as exc:
                raise RuntimeFailure(
                    f"VIBECODE_SANDBOX_USER must be numeric (uid:gid), not {spec.user!r}."
                ) from exc
            path, made = btrfs.workspace_create(
                root=root, name=spec.volume_name, limit_bytes=spec.disk_mb * 2**20, uid=uid, gid=gid
            )
            try:
                api.create_volume(
                    name=spec.volume_name,
                    driver="local",
                    driver_opts={"type": "none", "o": "bind", "device": path},
                    labels={**spec.labels, "vibecode.disk_mb": str(spec.disk_mb)},
                )
            except Exception:
                # Only a subvolume this call made is empty; one found there may hold a workspace.
                if made:
                    btrfs.workspace_delete(path=path)
                raise
            self._volume_paths[spec.volume_name] = path

    def _volume_path(self, volume_name: str) -> str:
        """The quota-limited subvolume behind a volume, or "" (plain volume, or gone)."""
        if volume_name not in self._volume_paths:
            try:
                info = self.client.api.inspect_volume(volume_name)
            except NotFound:
                return ""
            device = (info.get("Options") or {}).get("device") or ""
            root = settings.VIBECODE_WORKSPACES_DIR
            self._volume_paths[volume_name] = device if root and btrfs.is_under(device, root) else ""
        return self._volume_paths[volume_name]

    def _remove_volume(self, volume_name: str) -> None:
        api = self.client.api
        with engine_errors("remove the workspace volume", self.engine):
            path = self._volume_path(volume_name)
            try:
                api.remove_volume(volume_name, force=True)
            except NotFound:
                pass
        self._volume_paths.pop(volume_name, None)
        root = settings.VIBECODE_WORKSPACES_DIR
        # Also a subvolume whose Docker volume went first (a delete cut short between the two).
        for candidate in dict.fromkeys(filter(None, (path, root and os.path.join(root, volume_name)))):
            btrfs.workspace_delete(path=candidate)

    def create(self, spec: SandboxSpec) -> SandboxRef:
        self._create_volume(spec)
        kwargs = docker_create_kwargs(spec)
        created_here = False
        with engine_errors("create the container", self.engine):
            try:
                container = self.client.containers.create(**kwargs)
                created_here = True
            except ImageNotFound as exc:
                raise RuntimeFailure(
                    f"The sandbox image {spec.image} is missing. An operator can build it with "
                    "`python manage.py build_sandbox_image`.",
                    code="image_missing",
                ) from exc
            except APIError as exc:
                if exc.status_code != 409:
                    raise
                container = self.client.containers.get(spec.name)
                if container.labels.get("vibecode.session_id") != spec.labels.get("vibecode.session_id"):
                    raise
        ref = SandboxRef(
            object_id=container.id, object_name=spec.name, volume_name=spec.volume_name, engine=self.engine
        )
        try:
            self.start(ref)
        except Exception:
            if created_here:
                self.remove(ref, volume=False)
            raise
        return ref

    def start(self, ref: SandboxRef) -> None:
        self._forget_helper(ref)
        with engine_errors("start the container", self.engine):
            try:
                self.client.api.start(ref.object_id)
            except NotFound as exc:
                raise SandboxNotFound() from exc
        self._wait_ready(ref)

    def _wait_ready(self, ref: SandboxRef, *, timeout: float = 15.0) -> None:
        """A container is ready when an exec runs in it; the first one normally succeeds."""
        deadline = time.monotonic() + timeout
        while True:
            with engine_errors("check the container is ready", self.engine):
                try:
                    exec_id = self.client.api.exec_create(ref.object_id, ["true"])["Id"]
                    self.client.api.exec_start(exec_id)
                    return
                except NotFound as exc:
                    raise SandboxNotFound() from exc
                except APIError as exc:
                    if exc.status_code != 409 or time.monotonic() > deadline:
                        raise
            time.sleep(0.02)

    def stop(self, ref: SandboxRef) -> None:
        self._forget_helper(ref)
        with engine_errors("stop the container", self.engine):
            try:
                self.client.api.stop(ref.object_id, timeout=settings.VIBECODE_SANDBOX_STOP_TIMEOUT_SECONDS)
            except NotFound:
                return
        self._cpu_samples.pop(ref.object_id, None)

    def status(self, ref: SandboxRef) -> SandboxStatus:
        api = self.client.api
        with engine_errors("inspect the volume", self.engine):
            try:
                api.inspect_volume(ref.volume_name)
                volume_exists = True
            except NotFound:
                volume_exists = False
        container = None
        with engine_errors("inspect the container", self.engine):
            # By id first; by name when the recorded id is stale (a container made again).
            for target in dict.fromkeys(filter(None, (ref.object_id, ref.object_name))):
                try:
                    container = api.inspect_container(target)
                    break
                except NotFound:
                    continue
        if container is None:
            return SandboxStatus(state=SandboxState.MISSING, volume_exists=volume_exists)
        state = container["State"]
        return SandboxStatus(
            object_id=container["Id"],
            state=SandboxState.RUNNING if state.get("Running") else SandboxState.STOPPED,
            volume_exists=volume_exists,
            oom_killed=bool(state.get("OOMKilled")),
            exit_code=state.get("ExitCode"),
        )

    def remove(self, ref: SandboxRef, *, volume: bool) -> None:
        self._forget_helper(ref)
        api = self.client.api
        with engine_errors("remove the container", self.engine):
            for target in filter(None, {ref.object_id, ref.object_name}):
                try:
                    api.remove_container(target, force=True)
                except NotFound:
                    pass
                except APIError as exc:
                    if exc.status_code != 409:  # 409: removal already in progress
                        raise
        self._cpu_samples.pop(ref.object_id, None)
        if volume:
            self._remove_volume(ref.volume_name)

    def list_sandboxes(self, labels: Mapping[str, str]) -> list[SandboxInfo]:
        filters = {"label": [f"{key}={value}" for key, value in labels.items()]}
        with engine_errors("list containers", self.engine):
            found = self.client.api.containers(all=True, filters=filters)
        return [
            SandboxInfo(
                object_id=item["Id"],
                object_name=item["Names"][0].lstrip("/") if item.get("Names") else "",
                labels=item.get("Labels") or {},
                running=item.get("State") == "running",
                image_id=item.get("ImageID") or "",
                engine=self.engine,
            )
            for item in found
        ]

    # --- the warm pool ---------------------------------------------------------------------------

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
        api = self.client.api
        with engine_errors("rename the container", self.engine):
            try:
                api.rename(ref.object_id, name)
            except NotFound as exc:
                raise SandboxNotFound() from exc
        resources: dict[str, int] = {}
        if memory_mb is not None:
            resources["Memory"] = resources["MemorySwap"] = memory_mb * 1024 * 1024
        if cpus is not None:
            resources["NanoCpus"] = int(cpus * 1_000_000_000)
        if pids is not None:
            resources["PidsLimit"] = pids
        if resources:
            # docker-py's update_container knows neither NanoCpus nor PidsLimit; the API does.
            with engine_errors("change the container's limits", self.engine):
                try:
                    url = api._url("/containers/{0}/update", ref.object_id)
                    api._result(api._post_json(url, data=resources), True)
                except NotFound as exc:
                    raise SandboxNotFound() from exc
        if disk_mb is not None:
            with engine_errors("inspect the workspace volume", self.engine):
                path = self._volume_path(ref.volume_name)
            if path:
                btrfs.workspace_set_limit(path=path, limit_bytes=disk_mb * 2**20)
        with engine_errors("inspect the container", self.engine):
            try:
                state = api.inspect_container(ref.object_id)["State"]
            except NotFound as exc:
                raise SandboxNotFound() from exc
        if not state.get("Running") or state.get("Paused") or state.get("Restarting"):
            raise SandboxNotRunning()
        return SandboxRef(
            object_id=ref.object_id, object_name=name, volume_name=ref.volume_name, engine=self.engine
        )

    def engine_memory_bytes(self) -> int | None:
        # Fixed for the engine's life, and `docker info` is one of its slower calls: asked once.
        if self._engine_memory is None:
            with engine_errors("describe the engine", self.engine):
                self._engine_memory = int(self.client.api.info().get("MemTotal") or 0) or None
        return self._engine_memory

    # --- running things -------------------------------------------------------------------------

    def _exec_create(self, ref: SandboxRef, argv: Sequence[str], **kwargs: Any) -> str:
        with engine_errors("start a process in the container", self.engine):
            try:
                return str(self.client.api.exec_create(ref.object_id, list(argv), **kwargs)["Id"])
            except NotFound as exc:
                raise SandboxNotRunning() from exc
            except APIError as exc:
                if exc.status_code == 409:  # "container is not running" / paused
                    raise SandboxNotRunning() from exc
                raise

    def open_terminal(self, ref: SandboxRef, *, terminal_id: str, cols: int, rows: int) -> TerminalStream:
        # A few ms: the host runs already, mostly. The helper may have been found dead just now
        # (the tenant's pkill): pty_start changes nothing twice, so the next helper is asked.
        try:
            self.helper(ref).call("pty_start", {})
        except HelperGone:
            self.helper(ref).call("pty_start", {})
        exec_id = self._exec_create(
            ref, pty_attach_argv(terminal_id, cols=cols, rows=rows), stdin=True, workdir=HELPER_WORKDIR
        )
        with engine_errors("open a terminal in the container", self.engine):
            raw = self.client.api.exec_start(exec_id, socket=True)
        return DockerTerminalStream(raw)

    def open_stream(self, ref: SandboxRef, argv: Sequence[str], *, workdir: str = "/") -> ProcessStream:
        exec_id = self._exec_create(ref, argv, stdin=True, workdir=workdir)
        with engine_errors("start a helper process in the container", self.engine):
            raw = self.client.api.exec_start(exec_id, socket=True)
        return DockerProcessStream(
            raw, name=f"helper in {ref.object_id[:12]}", client=self.client, exec_id=exec_id
        )

    def stats(self, ref: SandboxRef) -> SandboxStats:
        with engine_errors("read the container's statistics", self.engine):
            try:
                sample = self.client.api.stats(ref.object_id, stream=False, one_shot=True)
            except NotFound as exc:
                raise SandboxNotRunning() from exc
        if not sample.get("pids_stats") and not sample.get("memory_stats"):
            raise SandboxNotRunning()
        cpu = sample.get("cpu_stats") or {}
        cpu_total = int((cpu.get("cpu_usage") or {}).get("total_usage") or 0)
        system_total = int(cpu.get("system_cpu_usage") or 0)
        online = int(cpu.get("online_cpus") or 1)
        previous = self._cpu_samples.get(ref.object_id)
        self._cpu_samples[ref.object_id] = (cpu_total, system_total)
        cpu_percent = 0.0
        if previous and system_total > previous[1]:
            cpu_percent = (cpu_total - previous[0]) / (system_total - previous[1]) * online * 100.0
        memory = sample.get("memory_stats") or {}
        # Page cache is reclaimable: report what `docker stats` reports.
        inactive = int((memory.get("stats") or {}).get("inactive_file") or 0)
        disk = None
        with engine_errors("inspect the workspace volume", self.engine):
            path = self._volume_path(ref.volume_name)
        if path:
            disk = btrfs.workspace_usage(path)
        return SandboxStats(
            cpu_percent=round(max(cpu_percent, 0.0), 1),
            memory_bytes=max(int(memory.get("usage") or 0) - inactive, 0),
            memory_limit_bytes=int(memory.get("limit") or 0),
            pids=int((sample.get("pids_stats") or {}).get("current") or 0),
            disk_bytes=disk.used_bytes if disk else None,
            disk_limit_bytes=disk.limit_bytes if disk else None,
        )

    # --- workspace volumes: pauses, backups and restores ---------------------------------------

    def pause(self, ref: SandboxRef) -> bool:
        with engine_errors("pause the container", self.engine):
            try:
                if self.client.api.inspect_container(ref.object_id)["State"].get("Paused"):
                    return False
                self.client.api.pause(ref.object_id)
                return True
            except NotFound as exc:
                raise SandboxNotRunning() from exc
            except APIError as exc:
                if exc.status_code == 409:  # "container is not running"
                    raise SandboxNotRunning() from exc
                raise

    def unpause(self, ref: SandboxRef) -> None:
        with engine_errors("unpause the container", self.engine):
            try:
                self.client.api.unpause(ref.object_id)
            except NotFound:
                return
            except APIError as exc:
                # Not paused: 409, or (Docker 20.10) a 500 that says so. Either way, done.
                if exc.status_code != 409 and "not paused" not in str(exc.explanation or exc):
                    raise

    def _volume_exists(self, name: str) -> bool:
        with engine_errors("inspect the volume", self.engine):
            try:
                self.client.api.inspect_volume(name)
            except NotFound:
                return False
        return True

    @contextlib.contextmanager
    def _volume_helper(
        self, spec: VolumeHelperSpec, *, writable: bool, command: Sequence[str] = ("true",)
    ) -> Iterator[Any]:
        """A helper container with the volume mounted, removed afterwards whatever happens. The
        archive API works on a created container: only :meth:`_empty_volume` starts one."""
        with engine_errors("create a helper container for the workspace", self.engine):
            try:
                container = self.client.containers.create(
                    **docker_volume_helper_kwargs(spec, writable=writable, command=command)
                )
            except ImageNotFound as exc:
                raise RuntimeFailure(
                    f"The sandbox image {spec.image} is missing.", code="image_missing"
                ) from exc
        try:
            yield container
        finally:
            with contextlib.suppress(Exception):
                self.client.api.remove_container(container.id, force=True)

    def volume_has_files(self, spec: VolumeHelperSpec) -> bool:
        if not self._volume_exists(spec.volume_name):
            return False
        with (
            self._volume_helper(spec, writable=False) as container,
            engine_errors("read the workspace", self.engine),
        ):
            chunks, _ = container.get_archive(f"{spec.mount}/.")
            # Closing the stream at the first entry drops the connection: the engine stops there.
            with contextlib.closing(chunks), tarfile.open(fileobj=_ChunkReader(chunks), mode="r|") as archive:
                return any(member.name.rstrip("/") not in {"", "."} for member in archive)

    def export_volume(self, spec: VolumeHelperSpec) -> Iterator[bytes]:
        if not self._volume_exists(spec.volume_name):
            raise VolumeNotFound(f"The workspace volume {spec.volume_name} does not exist.")
        with self._volume_helper(spec, writable=False) as container:
            with engine_errors("read the workspace", self.engine):
                chunks, _ = container.get_archive(f"{spec.mount}/.")
            with contextlib.closing(chunks):
                while True:
                    with engine_errors("read the workspace", self.engine):
                        chunk = next(chunks, None)
                    if chunk is None:
                        return
                    yield chunk

    def import_volume(self, spec: VolumeHelperSpec, stream: Iterable[bytes], *, replace: bool) -> None:
        if self.volume_has_files(spec):
            if not replace:
                raise VolumeNotEmpty(f"The volume {spec.volume_name} already has files.")
            self._empty_volume(spec)
        # Made as a sandbox's volume is (with its disk quota when quotas are on); kept if it exists.
        self._create_volume(
            SandboxSpec(
                name="",
                volume_name=spec.volume_name,
                image=spec.image,
                labels=spec.volume_labels,
                memory_mb=spec.memory_mb,
                cpus=spec.cpus,
                pids=spec.pids,
                user=spec.user,
                disk_mb=spec.disk_mb,
            )
        )
        with (
            self._volume_helper(spec, writable=True) as container,
            engine_errors("write the workspace", self.engine),
        ):
            # The archive's entries start with "./": they land under the mount point.
            if not container.put_archive(spec.mount, iter(stream)):
                raise RuntimeFailure(f"The engine refused to unpack the archive into {spec.volume_name}.")

    def _empty_volume(self, spec: VolumeHelperSpec, *, timeout: float = 300) -> None:
        """Delete everything in the volume, as the sandbox user (who made every file in it)."""
        command = ["find", spec.mount, "-mindepth", "1", "-maxdepth", "1", "-exec", "rm", "-rf", "{}", "+"]
        with self._volume_helper(spec, writable=True, command=command) as container:
            with engine_errors("empty the workspace", self.engine):
                container.start()
                result = container.wait(timeout=timeout)
            if result.get("StatusCode") != 0:
                with engine_errors("read the helper's output", self.engine):
                    output = container.logs(stdout=True, stderr=True)[-300:].decode(errors="replace")
                raise RuntimeFailure(f"Could not empty the workspace volume {spec.volume_name}: {output}")

    # --- images ---------------------------------------------------------------------------------

    def image_id(self, image: str) -> str | None:
        with engine_errors("inspect the image", self.engine):
            try:
                return str(self.client.api.inspect_image(image)["Id"])
            except (NotFound, ImageNotFound):
                return None

    def image_labels(self, image: str) -> dict[str, str]:
        with engine_errors("inspect the image", self.engine):
            try:
                return dict(self.client.api.inspect_image(image).get("Config", {}).get("Labels") or {})
            except (NotFound, ImageNotFound):
                return {}

    def image_size(self, image: str) -> int:
        with engine_errors("inspect the image", self.engine):
            try:
                return int(self.client.api.inspect_image(image).get("Size") or 0)
            except (NotFound, ImageNotFound):
                return 0

    def image_remove_untagged(self, image_id: str) -> str:
        with engine_errors("remove the image", self.engine):
            try:
                if self.client.api.inspect_image(image_id).get("RepoTags"):
                    return "still tagged"
                self.client.api.remove_image(image_id)
            except (NotFound, ImageNotFound):
                return "gone"
            except APIError as exc:
                if exc.status_code == 409:  # a container still uses it
                    return f"in use: {exc.explanation}"
                raise
        return "removed"

    def image_build(
        self,
        *,
        context_dir: str,
        tag: str,
        buildargs: Mapping[str, str],
        nocache: bool,
        labels: Mapping[str, str] | None = None,
    ) -> Iterator[str]:
        # The classic builder (as with DOCKER_BUILDKIT=0): its JSON stream gives step lines and
        # errors without parsing a terminal UI. A step (apt-get) may be silent for minutes: a
        # client of its own with a long read timeout.
        client = docker_client_for(
            self._base_url or settings.DOCKER_HOST, tls_dir=self._tls_dir, timeout=1800
        ).api
        try:
            stream = client.build(
                path=context_dir,
                dockerfile="Dockerfile",
                tag=tag,
                buildargs=dict(buildargs),
                network_mode="host",
                nocache=nocache,
                labels=dict(labels or {}),
                pull=False,
                rm=True,
                forcerm=True,
                decode=True,
            )
            for chunk in stream:
                if "error" in chunk:
                    detail = (chunk.get("errorDetail") or {}).get("message") or chunk["error"]
                    raise ImageBuildFailed(str(detail).strip())
                for line in str(chunk.get("stream") or "").splitlines():
                    if line.strip():
                        yield line.rstrip()
        except APIError as exc:
            raise ImageBuildFailed(str(exc)) from exc
        except DockerException as exc:
            raise (
                RuntimeUnavailable() if self.engine == LOCAL else EngineUnavailable.naming(self.engine)
            ) from exc
        finally:
            client.close()
