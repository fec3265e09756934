"""Pure functions from a session and its limits to what the runtime needs. No I/O here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings

from sessions_app.runtime.base import SandboxRef, SandboxSpec, VolumeHelperSpec
from sessions_app.runtime.tunnel import EGRESS_PORT

if TYPE_CHECKING:
    from sessions_app.models import Session

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
    return SandboxSpec(
        name=session.container_name,
        volume_name=session.volume_name,
        image=session.image,
        labels=sandbox_labels(user_id=session.owner_id, public_id=session.public_id),
        memory_mb=int(session.limits["memory_mb"]),
        cpus=float(session.limits["cpus"]),
        pids=int(session.limits["pids"]),
        runtime=session.runtime,
        network=settings.VIBECODE_SANDBOX_NETWORK,
        user=settings.VIBECODE_SANDBOX_USER,
        read_only_root=settings.VIBECODE_SANDBOX_READ_ONLY_ROOT,
        drop_capabilities=settings.VIBECODE_SANDBOX_DROP_CAPABILITIES,
        tmp_size_mb=settings.VIBECODE_SANDBOX_TMP_SIZE_MB,
        nofile=settings.VIBECODE_SANDBOX_NOFILE,
        log_max_size=settings.VIBECODE_SANDBOX_LOG_MAX_SIZE,
        env=sandbox_env(),
        disk_mb=disk_mb(session),
        read_only_files=read_only_files(),
    )


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
    )
