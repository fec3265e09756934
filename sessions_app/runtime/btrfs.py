"""Workspaces with a hard disk quota: one btrfs subvolume per workspace, limited by a qgroup.

The runtime mounts the subvolume as the workspace volume (Docker: a ``local`` volume with
``type=none,o=bind,device=<subvolume>``). Writes past the limit fail inside the sandbox with
EDQUOT ("Disk quota exceeded"); the host, the backend and the other workspaces are unaffected.

The filesystem is ``VIBECODE_WORKSPACES_DIR``: a partition in production, a loop image that
``scripts/setup.sh`` makes and mounts in development (``var/workspaces``). Quotas must be enabled
on it (``btrfs quota enable``). Every function here is idempotent and says what it does when the
thing is already there or already gone. They need root (or CAP_SYS_ADMIN) and ``btrfs-progs``.

Usage is read from the kernel's sysfs (``/sys/fs/btrfs/<fsid>/qgroups/0_<id>/``), not from a
``btrfs`` process, so that the IDE's stats poll stays cheap.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import struct
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from sessions_app.runtime.errors import RuntimeFailure

logger = logging.getLogger(__name__)

BTRFS = "btrfs"
SUBVOLUME_ROOT_INODE = 256  # the root directory of every btrfs subvolume has this inode number
# ioctl numbers from linux/btrfs.h: _IOWR(0x94, 18, 4096 bytes) and _IOR(0x94, 31, 1024 bytes).
BTRFS_IOC_INO_LOOKUP = 0xD0009412
BTRFS_IOC_FS_INFO = 0x8400941F
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")
SYSFS = Path("/sys/fs/btrfs")


class WorkspaceDiskFailure(RuntimeFailure):
    code = "workspace_disk_failed"
    default_detail = "The workspace's disk could not be prepared."


@dataclass(frozen=True)
class DiskUsage:
    used_bytes: int
    limit_bytes: int | None  # None: the subvolume has no limit


def _run(*argv: str) -> str:
    try:
        done = subprocess.run([BTRFS, *argv], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WorkspaceDiskFailure(f"btrfs {argv[0]} {argv[1]} failed: {exc}") from exc
    if done.returncode != 0:
        raise WorkspaceDiskFailure(f"btrfs {' '.join(argv[:2])} failed: {done.stderr.strip()[-300:]}")
    return done.stdout


def workspace_path(*, root: str, name: str) -> str:
    """Where the workspace ``name`` lives under ``root``; refuses names that could escape it."""
    if not NAME_RE.match(name):
        raise WorkspaceDiskFailure(f"Refusing the workspace name {name!r}.")
    return os.path.join(root, name)


def is_subvolume(path: str) -> bool:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return st.st_ino == SUBVOLUME_ROOT_INODE and os.path.isdir(path) and not os.path.islink(path)


def is_under(path: str, root: str) -> bool:
    """Whether ``path`` is a direct child of ``root`` (what this module makes, nothing else)."""
    return bool(root) and os.path.dirname(os.path.normpath(path)) == os.path.normpath(root)


def problems(root: str) -> list[str]:
    """Why ``root`` cannot hold quota-limited workspaces; empty when it can."""
    if not os.path.isdir(root):
        return [f"{root} does not exist"]
    fsid = _fsid(root)
    if fsid is None:
        return [f"{root} is not a btrfs filesystem"]
    if not (SYSFS / fsid / "qgroups").is_dir():
        return [f"quotas are not enabled on {root} (btrfs quota enable {root})"]
    return []


def workspace_create(*, root: str, name: str, limit_bytes: int, uid: int, gid: int) -> tuple[str, bool]:
    """Make the subvolume ``root/name`` owned by ``uid:gid`` with a hard limit of ``limit_bytes``;
    return its path and whether this call made it. There already (a workspace whose Docker
    volume was lost, say): kept as it is, files and limit, and ``False``. A limit that cannot be
    set removes the subvolume made here and raises ``WorkspaceDiskFailure``."""
    path = workspace_path(root=root, name=name)
    if is_subvolume(path):
        return path, False
    _run("subvolume", "create", path)
    try:
        os.chown(path, uid, gid)
        os.chmod(path, 0o755)  # noqa: S103  (the sandbox user owns it; others may read, as in a volume)
        _run("qgroup", "limit", str(limit_bytes), path)
    except Exception:
        workspace_delete(path=path)
        raise
    logger.info("workspace subvolume %s made, limit %d MiB", path, limit_bytes // 2**20)
    return path, True


def workspace_set_limit(*, path: str, limit_bytes: int) -> None:
    """Change the hard limit of the subvolume at ``path`` (a claimed pool member gets its owner's
    disk quota). Files already written stay; writes past a lower limit fail from now on."""
    if not is_subvolume(path):
        raise WorkspaceDiskFailure(f"{path} is not a workspace subvolume.")
    _run("qgroup", "limit", str(limit_bytes), path)


def workspace_delete(*, path: str) -> None:
    """Delete the subvolume and its files, and its qgroup. Gone already: no-op.

    The kernel frees the space (and drops the qgroup of a deleted subvolume) in the background;
    destroying the qgroup here is best effort for kernels that keep it.
    """
    if not is_subvolume(path):
        if os.path.lexists(path):
            raise WorkspaceDiskFailure(f"{path} is not a subvolume; refusing to delete it.")
        return
    root_id = _root_id(path)
    _run("subvolume", "delete", path)
    if root_id is not None:
        subprocess.run(
            [BTRFS, "qgroup", "destroy", f"0/{root_id}", os.path.dirname(path)],
            capture_output=True,
            timeout=30,
            check=False,
        )
    logger.info("workspace subvolume %s deleted", path)


def workspace_usage(path: str) -> DiskUsage | None:
    """Bytes the subvolume's files take and its limit, from the kernel's qgroup counters.
    None when ``path`` is not a quota-accounted subvolume (or is gone)."""
    if not is_subvolume(path):
        return None
    fsid = _fsid(path)
    root_id = _root_id(path)
    if fsid is None or root_id is None:
        return None
    qgroup = SYSFS / fsid / "qgroups" / f"0_{root_id}"
    try:
        used = int((qgroup / "referenced").read_text())
        limit = int((qgroup / "max_referenced").read_text())
    except (OSError, ValueError):
        return None
    # The kernel reports "no limit" as 0 here (or as the largest u64 on some versions).
    return DiskUsage(used_bytes=used, limit_bytes=limit if 0 < limit < 2**63 else None)


def qgroup_exists(path_root: str, root_id: int) -> bool:
    """Whether the qgroup 0/<root_id> is still there (tests: a delete removes it)."""
    fsid = _fsid(path_root)
    return fsid is not None and (SYSFS / fsid / "qgroups" / f"0_{root_id}").exists()


def root_id(path: str) -> int | None:
    return _root_id(path)


def _root_id(path: str) -> int | None:
    """The subvolume id of ``path`` (BTRFS_IOC_INO_LOOKUP with objectid 256, tree 0)."""
    buffer = bytearray(4096)
    struct.pack_into("=QQ", buffer, 0, 0, SUBVOLUME_ROOT_INODE)
    if not _dir_ioctl(path, BTRFS_IOC_INO_LOOKUP, buffer):
        return None
    return int(struct.unpack_from("=Q", buffer, 0)[0])


def _fsid(path: str) -> str | None:
    """The filesystem's UUID (its sysfs directory name), or None when not btrfs."""
    buffer = bytearray(1024)
    if not _dir_ioctl(path, BTRFS_IOC_FS_INFO, buffer):
        return None
    return str(uuid.UUID(bytes=bytes(buffer[16:32])))


def _dir_ioctl(path: str, request: int, buffer: bytearray) -> bool:
    """Run ``ioctl(request)`` on the directory ``path``, filling ``buffer``; False on any error."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        fcntl.ioctl(fd, request, buffer)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True
