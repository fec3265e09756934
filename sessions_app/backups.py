"""Backups and restores of workspaces and of the database, through the Docker API only.

A workspace volume is read and written by a throwaway container that mounts it (never started:
the engine's archive API works on a created container), so no host path is involved and the
same code works against a remote engine. Restores refuse to overwrite a workspace that has files
unless forced. ``backup_all`` adds the database (``pg_dump`` or SQLite's online backup) and a
manifest of SHA-256 checksums that ``restore_all`` verifies before touching anything.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import shutil
import sqlite3
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from django.conf import settings
from django.db import connection
from django.utils import timezone

from core_app.errors import DomainError
from sessions_app.models import Session
from sessions_app.runtime.docker import docker_client, engine_errors
from sessions_app.specs import instance_labels

MOUNT = "/data"


class BackupError(DomainError):
    code = "backup_error"


class WorkspaceNotEmpty(BackupError):
    status_code = 409
    code = "workspace_not_empty"
    default_detail = "The workspace already has files; restoring over them needs --force."


@contextlib.contextmanager
def _volume_container(volume: str, *, read_only: bool) -> Iterator[Any]:
    """A created (never started) container with ``volume`` at /data, removed afterwards."""
    client = docker_client()
    with engine_errors("create a container for the backup"):
        client.api.create_volume(name=volume, labels=instance_labels())  # kept if it exists
        container = client.containers.create(
            settings.VIBECODE_SANDBOX_IMAGE,
            command=["true"],
            network_mode="none",
            labels={**instance_labels(), "vibecode.role": "backup"},
            volumes={volume: {"bind": MOUNT, "mode": "ro" if read_only else "rw"}},
        )
    try:
        yield container
    finally:
        with contextlib.suppress(Exception):
            container.remove(force=True)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def workspace_backup(*, volume: str, output: Path) -> dict[str, Any]:
    """Write the volume's files to ``output`` (tar.gz, paths relative to /workspace)."""
    with _volume_container(volume, read_only=True) as container:
        with engine_errors("read the workspace"):
            stream, _ = container.get_archive(f"{MOUNT}/.")
        output.parent.mkdir(parents=True, exist_ok=True)
        with output.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as packed:
            for chunk in stream:
                packed.write(chunk)
    return {"file": output.name, "sha256": _sha256_file(output), "size": output.stat().st_size}


def _volume_has_files(container: Any) -> bool:
    with engine_errors("read the workspace"):
        stream, _ = container.get_archive(f"{MOUNT}/.")
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
        return any(member.name.strip("./") for member in archive.getmembers())


def workspace_restore(*, volume: str, archive: BinaryIO, force: bool = False) -> None:
    """Unpack a backup into ``volume``. Refuses when the volume has files, unless ``force``;
    with ``force`` the volume is emptied first, so the result equals the backup."""
    try:
        data = gzip.decompress(archive.read())
        with tarfile.open(fileobj=io.BytesIO(data)) as check:
            check.getmembers()  # the whole archive reads back before anything is emptied
    except (OSError, EOFError, tarfile.TarError) as exc:
        raise BackupError(f"The backup cannot be read ({exc}); nothing was changed.") from exc
    with _volume_container(volume, read_only=False) as container:
        if _volume_has_files(container):
            if not force:
                raise WorkspaceNotEmpty(
                    f"The volume {volume} already has files; use --force to replace them."
                )
            _empty_volume(volume)
        with engine_errors("write the workspace"):
            # The archive's entries start with "./": put them under the mount point.
            if not container.put_archive(MOUNT, data):
                raise BackupError(f"The engine refused to unpack the backup into {volume}.")


def _empty_volume(volume: str) -> None:
    client = docker_client()
    with engine_errors("empty the workspace"):
        client.containers.run(
            settings.VIBECODE_SANDBOX_IMAGE,
            ["sh", "-c", f"find {MOUNT} -mindepth 1 -maxdepth 1 -exec rm -rf {{}} +"],
            network_mode="none",
            user="0",
            remove=True,
            labels={**instance_labels(), "vibecode.role": "backup"},
            volumes={volume: {"bind": MOUNT, "mode": "rw"}},
        )


# --- everything ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupReport:
    directory: Path
    manifest: dict[str, Any]


def _database_backup(directory: Path) -> dict[str, Any]:
    settings_dict = connection.settings_dict
    if connection.vendor == "sqlite":
        target = directory / "database.sqlite3"
        with (
            contextlib.closing(sqlite3.connect(settings_dict["NAME"])) as source,
            contextlib.closing(sqlite3.connect(target)) as copy,
        ):
            source.backup(copy)
        engine = "sqlite"
    elif connection.vendor == "postgresql":
        target = directory / "database.pgdump"
        if not shutil.which("pg_dump"):
            raise BackupError("pg_dump is not installed (Debian: postgresql-client).")
        env = {"PGPASSWORD": settings_dict.get("PASSWORD") or ""}
        subprocess.run(
            ["pg_dump", "--format=custom", "--no-owner", "--file", str(target), *_pg_args(settings_dict)],
            check=True,
            env={**_base_env(), **env},
            capture_output=True,
        )
        engine = "postgresql"
    else:
        raise BackupError(f"Backups of a {connection.vendor} database are not supported.")
    return {"engine": engine, "file": target.name, "sha256": _sha256_file(target)}


def _pg_args(settings_dict: dict[str, Any]) -> list[str]:
    return [
        "--host",
        str(settings_dict.get("HOST") or "localhost"),
        "--port",
        str(settings_dict.get("PORT") or 5432),
        "--username",
        str(settings_dict.get("USER") or "postgres"),
        "--dbname",
        str(settings_dict["NAME"]),
    ]


def _base_env() -> dict[str, str]:
    import os

    return {key: value for key, value in os.environ.items() if key in {"PATH", "HOME", "LANG"}}


def backup_all(*, output: Path) -> BackupReport:
    """The database and every session's workspace, with a manifest of checksums."""
    output.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {
        "created_at": timezone.now().isoformat(),
        "database": _database_backup(output),
        "workspaces": [],
    }
    for session in Session.objects.exclude(status=Session.Status.DELETING).order_by("pk"):
        entry = workspace_backup(
            volume=session.volume_name, output=output / "workspaces" / f"{session.public_id}.tar.gz"
        )
        manifest["workspaces"].append({"session": session.public_id, "volume": session.volume_name, **entry})
    (output / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return BackupReport(output, manifest)


def _verify(directory: Path, manifest: dict[str, Any]) -> None:
    files = [(directory / manifest["database"]["file"], manifest["database"]["sha256"])]
    files += [(directory / "workspaces" / w["file"], w["sha256"]) for w in manifest["workspaces"]]
    for path, expected in files:
        if not path.exists() or _sha256_file(path) != expected:
            raise BackupError(f"{path.name} is missing or does not match its checksum; nothing was restored.")


def restore_all(*, directory: Path, force: bool = False) -> dict[str, Any]:
    """Restore the database, then every workspace into its volume. Checksums are verified first.
    Workspaces that already have files are refused unless ``force``."""
    manifest = json.loads((directory / "manifest.json").read_text())
    _verify(directory, manifest)
    if not force:
        for workspace in manifest["workspaces"]:
            with _volume_container(workspace["volume"], read_only=True) as container:
                if _volume_has_files(container):
                    volume = workspace["volume"]
                    raise WorkspaceNotEmpty(
                        f"{volume} already has files; nothing was restored (use --force)."
                    )
    database = manifest["database"]
    settings_dict = connection.settings_dict
    if database["engine"] == "sqlite":
        if connection.vendor != "sqlite":
            raise BackupError("This backup holds a SQLite database; restore it with the SQLite settings.")
        connection.close()
        shutil.copyfile(directory / database["file"], settings_dict["NAME"])
    else:
        if connection.vendor != "postgresql":
            raise BackupError("This backup holds a PostgreSQL database; set DATABASE_URL to restore it.")
        connection.close()
        subprocess.run(
            [
                "pg_restore",
                "--clean",
                "--if-exists",
                "--no-owner",
                *_pg_args(settings_dict),
                str(directory / database["file"]),
            ],
            check=True,
            env={**_base_env(), "PGPASSWORD": settings_dict.get("PASSWORD") or ""},
            capture_output=True,
        )
    for workspace in manifest["workspaces"]:
        with (directory / "workspaces" / workspace["file"]).open("rb") as archive:
            workspace_restore(volume=workspace["volume"], archive=archive, force=force)
    # The restored rows describe containers of another engine's past: make them agree with this one.
    from sessions_app.operations import sessions_reconcile

    sessions_reconcile()
    return manifest
