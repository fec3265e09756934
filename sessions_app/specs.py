"""Pure functions from a session and its limits to what the runtime needs. No I/O here."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from django.conf import settings

from sessions_app.runtime.base import SandboxRef, SandboxSpec, VolumeHelperSpec
from sessions_app.runtime.tunnel import EGRESS_PORT

if TYPE_CHECKING:
    from sessions_app.models import Session, WarmSandbox

# Inside the sandbox HOME lives on the workspace volume, because the root filesystem is read-only
# and whatever the user installs (pip --user, npm -g) must survive suspend and resume.
SANDBOX_HOME = "/workspace/.home"
# Where VIBECODE_SANDBOX_CA_BUNDLE is mounted (read-only) inside a sandbox.
SANDBOX_CA_BUNDLE = "/etc/vibecode/ca-bundle.crt"


def container_name(*, user_id: int, public_id: str) -> str:
    return f"vibecode-{user_id}-{public_id}"


def volume_name(*, user_id: int, public_id: str) -> str:
    return f"vibecode-{user_id}-{public_id}-ws"


def sandbox_labels(*, user_id: int, public_id: str) -> dict[str, str]:
    return {
        "app": "vibecode",
        "vibecode.instance": settings.VIBECODE_INSTANCE,
        "vibecode.user_id": str(user_id),
        "vibecode.session_id": public_id,
    }


def instance_labels() -> dict[str, str]:
    """The labels every sandbox of this installation carries."""
    return {"app": "vibecode", "vibecode.instance": settings.VIBECODE_INSTANCE}


def sandbox_env() -> dict[str, str]:
    return {
        "HOME": SANDBOX_HOME,
        "PATH": f"{SANDBOX_HOME}/.local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "NPM_CONFIG_PREFIX": f"{SANDBOX_HOME}/.local",
        # Debian marks its python3 "externally managed"; `pip install --user` is what we want.
        "PIP_BREAK_SYSTEM_PACKAGES": "1",
        "PIP_USER": "1",
        "PYTHONUSERBASE": f"{SANDBOX_HOME}/.local",
        "TMUX_TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        **egress_env(),
    }


def egress_env() -> dict[str, str]:
    """Package egress (issue 14): with egress on, every HTTP client in the sandbox (pip, npm, git,
    curl, urllib) goes through the tunnel's proxy port, and trusts the CA bundle if one is set."""
    if settings.VIBECODE_EGRESS == "off":
        return {}
    proxy = f"http://127.0.0.1:{EGRESS_PORT}"
    no_proxy = "localhost,127.0.0.1,::1"
    env = {
        "HTTP_PROXY": proxy,
        "HTTPS_PROXY": proxy,
        # curl (so git) reads only the lower-case http_proxy.
        "http_proxy": proxy,
        "https_proxy": proxy,
        "NO_PROXY": no_proxy,
        "no_proxy": no_proxy,
        "npm_config_proxy": proxy,
        "npm_config_https_proxy": proxy,
        "npm_config_noproxy": no_proxy,
    }
    if settings.VIBECODE_SANDBOX_CA_BUNDLE:
        for name in (
            "SSL_CERT_FILE",
            "REQUESTS_CA_BUNDLE",
            "PIP_CERT",
            "NODE_EXTRA_CA_CERTS",
            "GIT_SSL_CAINFO",
        ):
            env[name] = SANDBOX_CA_BUNDLE
    return env


def read_only_files() -> dict[str, str]:
    """Host files mounted read-only into a sandbox: the egress CA bundle, when egress is on."""
    if settings.VIBECODE_EGRESS == "off" or not settings.VIBECODE_SANDBOX_CA_BUNDLE:
        return {}
    return {settings.VIBECODE_SANDBOX_CA_BUNDLE: SANDBOX_CA_BUNDLE}


def sandbox_spec(session: Session) -> SandboxSpec:
    """The spec of a session's sandbox, from its recorded names, image and limits snapshot."""
    return _spec(
        name=session.container_name,
        volume_name=session.volume_name,
        image=session.image,
        runtime=session.runtime,
        labels=sandbox_labels(user_id=session.owner_id, public_id=session.public_id),
        limits=session.limits,
        engine=session.engine,
    )


def _spec(
    *,
    name: str,
    volume_name: str,
    image: str,
    runtime: str,
    labels: Mapping[str, str],
    limits: Mapping[str, Any],
    engine: str = "local",
) -> SandboxSpec:
    disk = limits.get("disk_mb")
    return SandboxSpec(
        name=name,
        volume_name=volume_name,
        image=image,
        labels=labels,
        memory_mb=int(limits["memory_mb"]),
        cpus=float(limits["cpus"]),
        pids=int(limits["pids"]),
        runtime=runtime,
        network=settings.VIBECODE_SANDBOX_NETWORK,
        user=settings.VIBECODE_SANDBOX_USER,
        read_only_root=settings.VIBECODE_SANDBOX_READ_ONLY_ROOT,
        drop_capabilities=settings.VIBECODE_SANDBOX_DROP_CAPABILITIES,
        tmp_size_mb=settings.VIBECODE_SANDBOX_TMP_SIZE_MB,
        nofile=settings.VIBECODE_SANDBOX_NOFILE,
        log_max_size=settings.VIBECODE_SANDBOX_LOG_MAX_SIZE,
        env=sandbox_env(),
        disk_mb=None if disk is None else int(disk),
        read_only_files=read_only_files(),
        engine=engine,
    )


# --- the warm pool -------------------------------------------------------------------------------

POOL_LABEL = "vibecode.pool"


def pool_container_name(*, pool_id: str) -> str:
    return f"vibecode-pool-{pool_id}"


def pool_volume_name(*, pool_id: str) -> str:
    return f"vibecode-pool-{pool_id}-ws"


def pool_labels(*, pool_id: str, container_name: str, volume_name: str) -> dict[str, str]:
    """A pool member's labels, fixed for its whole life (Docker cannot change labels): no user or
    session id, even once claimed (ownership is in the database). The names it was made under
    are recorded, so reconcile can tell a never-claimed member (still under its pool name) from a
    claimed one (renamed) without re-deriving a name from a template."""
    return {
        **instance_labels(),
        POOL_LABEL: "1",
        "vibecode.pool_id": pool_id,
        "vibecode.pool_name": container_name,
        "vibecode.volume": volume_name,
    }


def pool_labels_filter() -> dict[str, str]:
    """The labels every pool member of this installation carries (claimed ones too)."""
    return {**instance_labels(), POOL_LABEL: "1"}


def default_limits(*, disk_quotas: bool) -> dict[str, Any]:
    """The limits of a user without overrides (what the pool is made with); no disk quota where
    the runtime cannot apply one."""
    return {
        "memory_mb": settings.VIBECODE_SANDBOX_MEMORY_MB,
        "cpus": settings.VIBECODE_SANDBOX_CPUS,
        "pids": settings.VIBECODE_SANDBOX_PIDS,
        "disk_mb": settings.VIBECODE_SANDBOX_DISK_MB if disk_quotas else None,
    }


def warm_sandbox_spec(member: WarmSandbox) -> SandboxSpec:
    """The spec a pool member is made with, from its row."""
    return _spec(
        name=member.container_name,
        volume_name=member.volume_name,
        image=member.image,
        runtime=member.runtime,
        labels=pool_labels(
            pool_id=member.pool_id, container_name=member.container_name, volume_name=member.volume_name
        ),
        limits=member.limits,
        engine=member.engine,
    )


def pool_key(*, image: str, runtime: str, limits: Mapping[str, Any]) -> str:
    """What must be equal for a create to take a pool member instead of making a sandbox: every
    part of the spec that a running container cannot change (image, runtime, network, user,
    hardening, /tmp, ulimits, logging, environment, read-only mounts) and whether the workspace
    has a disk quota at all. Names, labels and the limits are not in it: a claim renames the
    container and sets memory, CPUs, PIDs and the disk limit (``SandboxRuntime.adopt``); labels
    cannot change and carry no owner."""
    spec = _spec(name="", volume_name="", image=image, runtime=runtime, labels={}, limits=limits)
    fixed = dataclasses.asdict(spec)
    for name in ("name", "volume_name", "labels", "memory_mb", "cpus", "pids", "disk_mb", "engine"):
        fixed.pop(name)
    fixed["has_disk_quota"] = spec.disk_mb is not None
    return hashlib.sha256(json.dumps(fixed, sort_keys=True, default=str).encode()).hexdigest()


def disk_mb(session: Session) -> int | None:
    """The disk quota a session's workspace was made with; None: no quota (made before quotas,
    or on an installation without them)."""
    value = session.limits.get("disk_mb")
    return None if value is None else int(value)


def owner_ids(user: str) -> tuple[int, int]:
    """The numeric uid and gid of the sandbox user ("1000:1000"; a lone uid doubles as gid)."""
    uid, _, gid = user.partition(":")
    return int(uid), int(gid or uid)


def session_ref(session: Session) -> SandboxRef:
    """The runtime's handle on a session's sandbox, from what the database recorded. Before the
    runtime has reported an id (a create cut short), the recorded name stands in for it."""
    return SandboxRef(
        object_id=session.container_id or session.container_name,
        object_name=session.container_name,
        volume_name=session.volume_name,
        engine=session.engine,
    )


# --- backups and restores -----------------------------------------------------------------------


def volume_helper_spec(*, volume_name: str, session: Session | None = None) -> VolumeHelperSpec:
    """The helper that backs up or restores ``volume_name``: the sandbox image and user, labelled
    as this installation's (``vibecode.role=backup``, no session id, so cleanup never takes it
    for an orphan sandbox, and tests remove it by label). Given the volume's ``session``, a volume
    the helper has to create gets that session's labels and disk quota, as its sandbox would."""
    volume_labels = instance_labels()
    if session is not None:
        volume_labels = sandbox_labels(user_id=session.owner_id, public_id=session.public_id)
    return VolumeHelperSpec(
        volume_name=volume_name,
        image=settings.VIBECODE_SANDBOX_IMAGE,
        labels={**instance_labels(), "vibecode.role": "backup"},
        volume_labels=volume_labels,
        user=settings.VIBECODE_SANDBOX_USER,
        disk_mb=disk_mb(session) if session is not None else None,
        engine=session.engine if session is not None else "local",
    )
