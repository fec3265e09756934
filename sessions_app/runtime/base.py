"""The sandbox runtime interface, modelled on JupyterHub's Spawner.

A runtime owns the life of sandboxes: a container (or pod) plus a workspace volume. Its contract:

* The database keeps only what a runtime returns in :class:`SandboxRef` (object id, object name,
  volume name). Callers pass that ref back; the runtime never re-derives a live object's name.
* Every method is idempotent. Asking to stop, start or remove something already in that state, or
  already gone, is not an error (Docker's 404/409 mean "already done"). Methods that need the
  object to exist raise :class:`SandboxNotFound` when it does not.
* Every method is synchronous and may block on I/O. Async callers wrap them in ``sync_to_async``;
  nothing here may run on the ASGI event loop.
* An engine that does not answer raises :class:`RuntimeUnavailable` (HTTP 503).
* Only :meth:`remove` with ``volume=True`` ever deletes a workspace volume.
* Disk quotas: when :attr:`SandboxRuntime.disk_quotas` is true, a new workspace volume gets a hard
  limit of ``SandboxSpec.disk_mb``; writes past it fail inside the sandbox with EDQUOT/ENOSPC and
  affect nothing else. Existing volumes keep the limit they were made with (none for volumes made
  before quotas, or while quotas were off).
"""

from __future__ import annotations

import abc
import base64
import enum
import socket
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sessions_app.runtime.errors import RuntimeFailure
from sessions_app.runtime.helper import (
    HELPER_ARGV,
    HELPER_WORKDIR,
    HelperClient,
    HelperPool,
    ProcessStream,
)
from sessions_app.runtime.tunnel import EGRESS_PORT, Tunnel, TunnelPool

# The tunnel is the helper program in its other mode (TCP connections both ways; see tunnel.py).
TUNNEL_ARGV = [*HELPER_ARGV[:-1], "tunnel", str(EGRESS_PORT)]


@dataclass(frozen=True)
class SandboxSpec:
    """Everything needed to make a sandbox, independent of the backend."""

    name: str
    volume_name: str
    image: str
    labels: Mapping[str, str]
    memory_mb: int
    cpus: float
    pids: int
    runtime: str = "runc"
    network: str = "none"
    user: str = "1000:1000"
    read_only_root: bool = True
    drop_capabilities: bool = True
    tmp_size_mb: int = 512
    nofile: int = 4096
    log_max_size: str = "10m"
    workdir: str = "/workspace"
    env: Mapping[str, str] = field(default_factory=dict)
    # Hard disk quota of a new workspace volume; None: no quota.
    disk_mb: int | None = None
    # Host files mounted read-only into the sandbox: {host path: path inside} (the egress CA bundle).
    read_only_files: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class VolumeHelperSpec:
    """A throwaway helper that reads or writes a workspace volume for backups and restores,
    hardened like a sandbox (no network, no capabilities, read-only root, the sandbox user)."""

    volume_name: str
    image: str
    labels: Mapping[str, str]  # the helper container's
    volume_labels: Mapping[str, str]  # a volume the helper has to create (a restore onto a new engine)
    user: str = "1000:1000"
    memory_mb: int = 256
    pids: int = 64
    cpus: float = 0.5
    # The disk quota a volume the helper has to create gets, as its sandbox's would (None: none).
    disk_mb: int | None = None
    # Where the volume is mounted: the sandbox's own workdir, so a new volume gets the image's
    # /workspace (owned by the sandbox user) exactly as a sandbox would.
    mount: str = "/workspace"


@dataclass(frozen=True)
class SandboxRef:
    object_id: str
    object_name: str
    volume_name: str


class SandboxState(enum.Enum):
    RUNNING = "running"
    STOPPED = "stopped"  # exists, not running (created, exited, paused)
    MISSING = "missing"  # no such container


@dataclass(frozen=True)
class SandboxStatus:
    state: SandboxState
    volume_exists: bool
    oom_killed: bool = False
    exit_code: int | None = None
    object_id: str = ""


@dataclass(frozen=True)
class SandboxStats:
    cpu_percent: float
    memory_bytes: int
    memory_limit_bytes: int
    pids: int
    # The workspace volume's used bytes and quota; None when the volume has no quota.
    disk_bytes: int | None = None
    disk_limit_bytes: int | None = None


@dataclass(frozen=True)
class ExecResult:
    exit_code: int | None
    stdout: bytes
    stderr: bytes
    duration_ms: int
    timed_out: bool
    truncated: bool
    oom_killed: bool
    max_rss_kb: int | None

    @classmethod
    def from_helper(cls, raw: Mapping[str, Any]) -> ExecResult:
        """The result the in-sandbox helper (``supervise`` in ``sandbox/agent.py``) reports, as JSON."""
        return cls(
            exit_code=raw["exit_code"],
            stdout=base64.b64decode(raw["stdout"]),
            stderr=base64.b64decode(raw["stderr"]),
            duration_ms=int(raw["duration_ms"]),
            timed_out=bool(raw["timed_out"]),
            truncated=bool(raw["truncated"]),
            oom_killed=bool(raw["oom_killed"]),
            max_rss_kb=raw["max_rss_kb"],
        )


@dataclass(frozen=True)
class ListeningPort:
    """A TCP port something listens on inside a sandbox (the helper's ``ports`` op)."""

    port: int
    address: str  # "127.0.0.1", "0.0.0.0", "::", "::1", ...
    pid: int | None  # None when the owner is not the sandbox user's to see
    command: str


@dataclass(frozen=True)
class PortsReport:
    ports: list[ListeningPort]
    truncated: bool  # more were listening than the helper reports


@dataclass(frozen=True)
class SandboxInfo:
    """A sandbox found on the engine by its labels (for reconciliation and cleanup)."""

    object_id: str
    object_name: str
    labels: Mapping[str, str]
    running: bool
    #: The id of the image build it was made from ("" when the backend cannot tell). A tag can be
    #: rebuilt; the id says which build a container runs.
    image_id: str = ""


class Tty(abc.ABC):
    """An interactive TTY exec: a raw byte socket plus resize and close.

    ``sock`` carries the terminal's bytes both ways, unframed. Async callers may set it
    non-blocking and use the event loop's ``sock_recv``/``sock_sendall`` on it.
    """

    sock: socket.socket

    @abc.abstractmethod
    def resize(self, *, cols: int, rows: int) -> None:
        """Apply a new window size (the process gets SIGWINCH). Gone already: no-op."""

    @abc.abstractmethod
    def exit_code(self) -> int | None:
        """The process's exit code once it has ended, else None."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close the socket; the process behind it gets a hangup. Idempotent."""


class SandboxRuntime(abc.ABC):
    _helper_pool: HelperPool | None = None
    _tunnel_pool: TunnelPool | None = None

    @property
    def disk_quotas(self) -> bool:
        """Whether new workspace volumes get a hard disk quota (``SandboxSpec.disk_mb``)."""
        return False

    # --- the helper: the one door for files, exec and streams ---------------------------------

    def helper(self, ref: SandboxRef) -> HelperClient:
        """The persistent helper of a running sandbox, started on first use and replaced when it
        has died or missed a deadline. It is the image's interpreter by absolute path, isolated,
        in ``/``: nothing the user writes changes what runs as the helper. Raises
        ``SandboxNotRunning`` when the container is not running, ``WorkspaceBusy`` (503) when
        the workspace has too many calls in flight."""
        pool = self._pool()
        return pool.get(
            _key(ref),
            start=lambda: self.open_stream(ref, HELPER_ARGV, workdir=HELPER_WORKDIR),
            label=_label(ref),
            on_dead=lambda pid: self._kill_helper(ref, pid),
        )

    def helper_private(self, ref: SandboxRef) -> HelperClient:
        """A helper of its own for one long stream (a download), so that pausing it for a slow
        client pauses nobody else; it counts against the workspace's calls in flight. It closes
        itself when its one stream ends, however that happens."""
        pool = self._pool()
        return HelperClient(
            self.open_stream(ref, HELPER_ARGV, workdir=HELPER_WORKDIR),
            label=f"{_label(ref)}/private",
            slots=pool.slots_for(_key(ref)),
            on_dead=lambda pid: self._kill_helper(ref, pid),
            single_use=True,
        )

    def tunnel(self, ref: SandboxRef, *, owner: str = "") -> Tunnel:
        """The TCP tunnel of a running sandbox (previews in, package egress out), started on
        first use and replaced when dead. ``owner`` is passed to the egress accept handler.
        Raises ``SandboxNotRunning`` when the container is not running."""
        if self._tunnel_pool is None:
            self._tunnel_pool = TunnelPool()
        return self._tunnel_pool.get(
            _key(ref),
            start=lambda: self.open_stream(ref, TUNNEL_ARGV, workdir=HELPER_WORKDIR),
            label=f"{_label(ref)}/tunnel",
            owner=owner,
            on_dead=lambda pid: self._kill_helper(ref, pid),
        )

    def tunnel_if_open(self, ref: SandboxRef) -> Tunnel | None:
        """The sandbox's live tunnel in this process, if there is one; never starts one."""
        return self._tunnel_pool.peek(_key(ref)) if self._tunnel_pool is not None else None

    def open_language_server(self, ref: SandboxRef, *, language: str, argv: Sequence[str]) -> ProcessStream:
        """Start ``argv`` (a language server speaking LSP on stdio) under the helper program's
        ``lsp`` supervisor, and return its stdin/stdout as a byte stream carrying LSP's
        ``Content-Length`` framing (``docs/lsp-protocol.md``). The supervisor keeps one server per
        ``language`` per sandbox (a new one replaces the old) and kills the server's process group
        when the stream closes. Raises ``SandboxNotRunning`` like :meth:`helper`."""
        return self.open_stream(ref, [*HELPER_ARGV[:-1], "lsp", language, "--", *argv], workdir="/workspace")

    def listening_ports(self, ref: SandboxRef) -> PortsReport:
        """The TCP ports listening inside a running sandbox, read from its ``/proc/net/tcp{,6}``
        by the helper, with the owning process where it can be seen, except the tunnel's egress
        port. A bounded list (the helper caps it). Raises ``SandboxNotRunning`` like :meth:`helper`."""
        raw = self.helper(ref).call("ports", {}).result
        ports = [
            ListeningPort(
                port=int(item["port"]),
                address=str(item["address"]),
                pid=int(item["pid"]) if item.get("pid") is not None else None,
                command=str(item.get("command") or ""),
            )
            for item in raw.get("ports", [])
            if int(item["port"]) != EGRESS_PORT  # the tunnel's own egress listener
        ]
        return PortsReport(ports=ports, truncated=bool(raw.get("truncated")))

    def _forget_helper(self, ref: SandboxRef) -> None:
        """Backends call this when they stop, start or remove a container: its helper and its
        tunnel in this process are closed, and the next call starts fresh ones."""
        if self._helper_pool is not None:
            self._helper_pool.discard(_key(ref))
        if self._tunnel_pool is not None:
            self._tunnel_pool.discard(_key(ref))

    def _pool(self) -> HelperPool:
        if self._helper_pool is None:
            self._helper_pool = HelperPool()
        return self._helper_pool

    def _kill_helper(self, ref: SandboxRef, pid: int | None) -> None:
        """Best effort: SIGKILL a helper declared dead (it may be stopped, not gone), so that it
        holds nothing. Runs as the sandbox user, so it can only ever kill that user's process."""
        if pid is None or pid <= 1:
            return
        self.open_stream(ref, ["/bin/kill", "-KILL", str(pid)], workdir="/").close()

    @abc.abstractmethod
    def ping(self) -> str:
        """A one-line description of the engine, or raise ``RuntimeUnavailable``."""

    @abc.abstractmethod
    def create(self, spec: SandboxSpec) -> SandboxRef:
        """Create the volume (kept if it exists, with whatever quota it has; a new one limited to
        ``spec.disk_mb`` when :attr:`disk_quotas`), then the container, start it and wait until it
        accepts exec. A container that already exists under ``spec.name`` with the same labels is
        adopted (and started) rather than duplicated. On failure, the container made by this
        call is removed; the volume is always kept."""

    @abc.abstractmethod
    def start(self, ref: SandboxRef) -> None:
        """Start a stopped sandbox and wait until it accepts exec. Running already: no-op.
        Raises ``SandboxNotFound`` when the container is gone."""

    @abc.abstractmethod
    def stop(self, ref: SandboxRef) -> None:
        """Stop the container, keeping it and its volume. Stopped or gone already: no-op."""

    @abc.abstractmethod
    def status(self, ref: SandboxRef) -> SandboxStatus:
        """The container's state and whether its volume exists. Never raises for a missing
        container: that is ``SandboxState.MISSING``."""

    @abc.abstractmethod
    def open_tty(
        self,
        ref: SandboxRef,
        argv: Sequence[str],
        *,
        cols: int,
        rows: int,
        env: Mapping[str, str] | None = None,
    ) -> Tty:
        """Start ``argv`` on a new TTY and return its socket. Raises ``SandboxNotRunning``."""

    @abc.abstractmethod
    def open_stream(self, ref: SandboxRef, argv: Sequence[str], *, workdir: str = "/") -> ProcessStream:
        """Start ``argv`` (an absolute program path: the sandbox's PATH is the user's) as the
        sandbox user in ``workdir`` and return its stdin/stdout as a byte stream. Commands run
        through the helper's ``exec`` op; this is for the helper itself. Raises
        ``SandboxNotRunning``."""

    @abc.abstractmethod
    def stats(self, ref: SandboxRef) -> SandboxStats:
        """CPU (percent of one core, since the previous call), memory, PIDs and the workspace
        volume's disk use (None without a quota) of a running sandbox. Raises ``SandboxNotRunning``."""

    @abc.abstractmethod
    def remove(self, ref: SandboxRef, *, volume: bool) -> None:
        """Remove the container (force). With ``volume=True`` also the workspace volume (and the
        storage behind it, e.g. its quota-limited subvolume): the only path that deletes user
        data, used by explicit deletes only. Already gone: no-op."""

    @abc.abstractmethod
    def list_sandboxes(self, labels: Mapping[str, str]) -> list[SandboxInfo]:
        """Every container, running or not, carrying all of ``labels``."""

    # --- the warm pool (sessions_app/warm_pool.py) ---------------------------------------------

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
        """Bind a running pool member to its session: rename the container to ``name``, set the
        memory, CPU and PID limits and the workspace volume's disk limit that are given (None:
        as made), and check that it still runs. Returns the ref under its new name (same id,
        same volume: a volume cannot be renamed). Raises ``SandboxNotFound`` when the container
        is gone and ``SandboxNotRunning`` when it no longer runs (killed behind our back); the
        caller then removes it and never hands it out. Never touches the workspace's files.
        Backends without it raise ``RuntimeFailure``: creates then take the cold path."""
        raise RuntimeFailure("This runtime cannot adopt pool members.")

    def engine_memory_bytes(self) -> int | None:
        """The engine's total memory (what the warm pool is sized against); None if unknown."""
        return None

    # --- workspace volumes: pauses, backups and restores ---------------------------------------

    @abc.abstractmethod
    def pause(self, ref: SandboxRef) -> bool:
        """Freeze every process of a running sandbox, so that its files hold still while they are
        copied. True when this call paused it; False when it was paused already (then whoever
        paused it unpauses it). Raises ``SandboxNotRunning`` when the container is stopped or
        gone. A caller that got True unpauses, also on failure (``try``/``finally``)."""

    @abc.abstractmethod
    def unpause(self, ref: SandboxRef) -> None:
        """Thaw a paused sandbox. Not paused, stopped or gone already: no-op."""

    @abc.abstractmethod
    def volume_has_files(self, spec: VolumeHelperSpec) -> bool:
        """Whether the volume holds anything at all (a file, a directory, ``.home``). Reads only
        until the first entry. A missing volume has no files (and is not created)."""

    @abc.abstractmethod
    def export_volume(self, spec: VolumeHelperSpec) -> Iterator[bytes]:
        """The volume's contents as an uncompressed tar stream, entries relative to its root
        (``./main.py``), ownership and modes kept. A generator: nothing happens before the first
        ``next()``, which raises ``VolumeNotFound`` for a missing volume (never created here).
        Closing it early releases everything it made. The volume is read as it is: a caller that
        wants a consistent copy of a running sandbox pauses it first."""

    @abc.abstractmethod
    def import_volume(self, spec: VolumeHelperSpec, stream: Iterable[bytes], *, replace: bool) -> None:
        """Unpack an uncompressed tar ``stream`` (as :meth:`export_volume` makes) into the volume,
        creating the volume when it is missing. A volume that has files raises ``VolumeNotEmpty``
        unless ``replace``, which empties it first so the result equals the archive. The engine
        unpacks as it reads: callers check the archive reads back whole before calling this."""

    # --- images (the sandbox image builder, sandbox/builder.py) --------------------------------

    @abc.abstractmethod
    def image_id(self, image: str) -> str | None:
        """The id of ``image`` (a name:tag or an id), or None when the engine lacks it."""

    @abc.abstractmethod
    def image_labels(self, image: str) -> dict[str, str]:
        """The labels of ``image``; empty when it is missing or has none."""

    @abc.abstractmethod
    def image_size(self, image: str) -> int:
        """The size in bytes of ``image``; 0 when it is missing."""

    @abc.abstractmethod
    def image_remove_untagged(self, image_id: str) -> str:
        """Remove ``image_id`` if nothing tags it and no container uses it. Returns what happened,
        as a short phrase for a progress line ("removed", "still tagged", "in use: ...");
        gone already: "gone"."""

    @abc.abstractmethod
    def image_build(
        self,
        *,
        context_dir: str,
        tag: str,
        buildargs: Mapping[str, str],
        nocache: bool,
        labels: Mapping[str, str] | None = None,
    ) -> Iterator[str]:
        """Build ``context_dir``'s Dockerfile as ``tag`` (with ``labels``), host networking and no pull,
        yielding its output lines as they come. A failing build raises ``ImageBuildFailed``
        carrying the engine's message."""


class ImageBuildFailed(Exception):
    """An image build failed; ``str()`` is the engine's message."""


def _key(ref: SandboxRef) -> str:
    return ref.object_id or ref.object_name


def _label(ref: SandboxRef) -> str:
    return f"{ref.object_name}/{ref.object_id[:12]}"
