"""Backups and restores of workspaces and of the database: services that the backup and restore
commands call.

Workspaces leave and enter the engine through the runtime only (``export_volume``,
``import_volume``, ``volume_has_files``, ``pause``/``unpause``): no host path and no Docker SDK
here, so the same code works against a remote engine. A running workspace is paused while its
files are read, so that the copy is consistent, and unpaused afterwards whatever happens.
Restores refuse a running session, refuse a workspace that has files unless forced, and read
the archive back whole before anything is emptied. ``backup_all`` adds the database (``pg_dump``
or SQLite's online backup) and a manifest of SHA-256 checksums that ``restore_all`` verifies
before touching anything. Every restore has a dry run: the same checks, and no change.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.utils import timezone

from core_app.errors import DomainError
from sessions_app import specs
from sessions_app.errors import SessionBusy, SessionRunning
from sessions_app.models import Session
from sessions_app.operations import sessions_reconcile
from sessions_app.runtime import get_runtime
from sessions_app.runtime.base import SandboxState
from sessions_app.runtime.errors import SandboxNotRunning, VolumeNotEmpty
from sessions_app.services import session_create, session_resume, session_suspend

logger = logging.getLogger(__name__)

CHUNK = 1 << 20


class BackupError(DomainError):
    code = "backup_error"


class WorkspaceNotEmpty(VolumeNotEmpty):
    default_detail = "The workspace already has files; restoring over them needs --force."


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _run(argv: list[str], *, env: dict[str, str]) -> None:
    try:
        subprocess.run(argv, check=True, env=env, capture_output=True)
    except subprocess.CalledProcessError as exc:
        said = exc.stderr.decode(errors="replace").strip()[-500:]
        raise BackupError(f"{argv[0]} failed (exit {exc.returncode}): {said}") from exc


# --- one workspace ------------------------------------------------------------------------------


def workspace_backup(*, session: Session, output: Path) -> dict[str, Any]:
    """Write the session's workspace to ``output`` (tar.gz, entries relative to /workspace).

    A running sandbox is paused while its files are read, so that the copy is consistent (as if
    everything stopped at one instant; its programs carry on where they were), and unpaused
    afterwards, also when the copy fails. The pause lasts the raw copy only; compression comes
    after. ``output`` appears only once complete."""
    runtime = get_runtime()
    ref = specs.session_ref(session)
    spec = specs.volume_helper_spec(volume_name=session.volume_name, session=session)
    output.parent.mkdir(parents=True, exist_ok=True)
    raw = output.with_name(f".{output.name}.tar.partial")
    packed = output.with_name(f".{output.name}.partial")
    try:
        try:
            paused = runtime.pause(ref)  # False: paused already, by whoever will unpause it
        except SandboxNotRunning:
            paused = False  # stopped: its files hold still by themselves
        try:
            with contextlib.closing(runtime.export_volume(spec)) as chunks, raw.open("wb") as spool:
                for chunk in chunks:
                    spool.write(chunk)
        finally:
            if paused:
                runtime.unpause(ref)
        with raw.open("rb") as source, packed.open("wb") as target:
            with gzip.GzipFile(fileobj=target, mode="wb", mtime=0, compresslevel=6) as gz:
                shutil.copyfileobj(source, gz, CHUNK)
        packed.replace(output)
    finally:
        raw.unlink(missing_ok=True)
        packed.unlink(missing_ok=True)
    logger.info("session %s: workspace backed up to %s (paused: %s)", session.public_id, output, paused)
    return {"file": output.name, "sha256": _sha256_file(output), "size": output.stat().st_size}


@dataclass(frozen=True)
class ArchiveSummary:
    entries: int
    size: int  # bytes, unpacked

    def __str__(self) -> str:
        return f"{self.entries} entries, {self.size} bytes"


def _read_archive(archive: BinaryIO) -> ArchiveSummary:
    """Read a backup once to its end (gzip's checksum included), before anything is emptied.
    Raises ``BackupError`` for an archive that does not read back whole, or that names a path
    outside the workspace."""
    archive.seek(0)
    entries = size = 0
    try:
        with gzip.GzipFile(fileobj=archive, mode="rb") as unpacked:
            with tarfile.open(fileobj=unpacked, mode="r|") as tar:
                for member in tar:
                    if member.name.startswith("/") or ".." in PurePosixPath(member.name).parts:
                        raise BackupError(
                            f"The backup names a path outside the workspace ({member.name[:100]!r}); "
                            "nothing was changed.",
                            code="backup_unsafe_path",
                        )
                    entries += member.name.rstrip("/") not in {"", "."}
                    size += member.size
            while unpacked.read(CHUNK):  # to the end: the trailer's checksum is checked there
                pass
    except (OSError, EOFError, tarfile.TarError, zlib.error) as exc:
        raise BackupError(f"The backup cannot be read ({exc}); nothing was changed.") from exc
    archive.seek(0)
    return ArchiveSummary(entries, size)


def _tar_chunks(archive: BinaryIO) -> Iterator[bytes]:
    archive.seek(0)
    with gzip.GzipFile(fileobj=archive, mode="rb") as unpacked:
        while chunk := unpacked.read(CHUNK):
            yield chunk


def _restore_volume(
    *,
    volume: str,
    session: Session | None,
    archive: BinaryIO,
    summary: ArchiveSummary,
    force: bool,
    dry_run: bool,
) -> str:
    """Unpack into ``volume`` (refused when it has files, unless ``force``); says what it did.
    A volume made here gets its ``session``'s labels and disk quota, as its sandbox's would."""
    runtime = get_runtime()
    spec = specs.volume_helper_spec(volume_name=volume, session=session)
    has_files = runtime.volume_has_files(spec)
    if has_files and not force:
        raise WorkspaceNotEmpty(f"The volume {volume} already has files; use --force to replace them.")
    done = f"{'replace the files of' if has_files else 'fill'} volume {volume} with the backup ({summary})"
    if not dry_run:
        runtime.import_volume(spec, _tar_chunks(archive), replace=force)
        logger.info("restored a backup into volume %s (%s)", volume, summary)
    return done


def _refuse_running(session: Session) -> None:
    running = session.status == Session.Status.RUNNING
    if not running and session.status in {Session.Status.SUSPENDED, Session.Status.ERROR}:
        running = get_runtime().status(specs.session_ref(session)).state == SandboxState.RUNNING
    if running:
        raise SessionRunning(
            f"The session {session.public_id} is running: suspend it before restoring into it "
            "(its programs would write over the restored files)."
        )
    if session.status not in {Session.Status.SUSPENDED, Session.Status.ERROR}:
        raise SessionBusy(
            f"The session {session.public_id} is {session.status}; try again once that is over."
        )


def workspace_restore(
    *, session: Session, archive: BinaryIO, force: bool = False, dry_run: bool = False
) -> str:
    """Unpack a backup into a session's workspace and say what was done (or, with ``dry_run``,
    what would be: the same checks, no change).

    Refuses a running session (suspend it first), a workspace that has files unless ``force``
    (which empties it first, so the result equals the backup), and an archive that does not read
    back whole."""
    _refuse_running(session)
    summary = _read_archive(archive)
    return _restore_volume(
        volume=session.volume_name,
        session=session,
        archive=archive,
        summary=summary,
        force=force,
        dry_run=dry_run,
    )


def workspace_restore_new_session(
    *, user: AbstractBaseUser, archive: BinaryIO, name: str, dry_run: bool = False
) -> tuple[Session | None, str]:
    """Make a new session for ``user`` with the backup's files, running. With ``dry_run`` the
    archive is read back and nothing is made."""
    summary = _read_archive(archive)
    if dry_run:
        return None, f"create a session {name!r} for {user.get_username()} with the backup ({summary})"
    session = session_create(user=user, name=name[:100])
    # Suspended while its files are replaced: nothing in it writes meanwhile.
    session = session_suspend(session=session)
    _restore_volume(
        volume=session.volume_name,
        session=session,
        archive=archive,
        summary=summary,
        force=True,
        dry_run=False,
    )
    session = session_resume(session=session)
    return (
        session,
        f"created session {session.public_id} for {user.get_username()} with the backup ({summary})",
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
        _run(
            ["pg_dump", "--format=custom", "--no-owner", "--file", str(target), *_pg_args(settings_dict)],
            env={**_base_env(), **env},
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
    return {key: value for key, value in os.environ.items() if key in {"PATH", "HOME", "LANG"}}


def backup_all(*, output: Path) -> BackupReport:
    """The database and every session's workspace, with a manifest of checksums. Running
    workspaces are paused one at a time while their files are read."""
    output.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {
        "created_at": timezone.now().isoformat(),
        "database": _database_backup(output),
        "workspaces": [],
    }
    for session in Session.objects.exclude(status=Session.Status.DELETING).order_by("pk"):
        entry = workspace_backup(
            session=session, output=output / "workspaces" / f"{session.public_id}.tar.gz"
        )
        manifest["workspaces"].append({"session": session.public_id, "volume": session.volume_name, **entry})
    (output / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return BackupReport(output, manifest)


def _load_manifest(directory: Path) -> dict[str, Any]:
    try:
        manifest: dict[str, Any] = json.loads((directory / "manifest.json").read_text())
        entries = [manifest["database"], *manifest["workspaces"]]
        needed = [{"file", "engine", "sha256"}] + [{"file", "volume", "sha256"}] * len(manifest["workspaces"])
        if not all(keys <= set(entry) for keys, entry in zip(needed, entries, strict=True)):
            raise KeyError("an entry lacks its file, volume, engine or checksum")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BackupError(
            f"{directory} has no readable manifest.json ({exc}); nothing was restored."
        ) from exc
    return manifest


def _verify(directory: Path, manifest: dict[str, Any]) -> None:
    files = [(directory / manifest["database"]["file"], manifest["database"]["sha256"])]
    files += [(directory / "workspaces" / w["file"], w["sha256"]) for w in manifest["workspaces"]]
    for path, expected in files:
        if not path.exists() or _sha256_file(path) != expected:
            raise BackupError(f"{path.name} is missing or does not match its checksum; nothing was restored.")


@dataclass
class RestoreReport:
    manifest: dict[str, Any]
    dry_run: bool
    actions: list[str] = field(default_factory=list)


def restore_all(*, directory: Path, force: bool = False, dry_run: bool = False) -> RestoreReport:
    """Restore the database, then every workspace into its volume, then reconcile.

    Before anything changes: every checksum is verified, the database engine must match, every
    workspace archive must read back whole, no workspace may belong to a running session, and
    workspaces that already have files are refused unless ``force``. ``dry_run`` does all of
    that, lists what it would do, and changes nothing."""
    manifest = _load_manifest(directory)
    _verify(directory, manifest)
    report = RestoreReport(manifest=manifest, dry_run=dry_run)
    database = manifest["database"]
    if database["engine"] != connection.vendor:
        raise BackupError(
            f"This backup holds a {database['engine']} database and this server uses {connection.vendor}; "
            "set DATABASE_URL to the kind of database the backup came from."
        )
    if database["engine"] == "postgresql" and not shutil.which("pg_restore"):
        raise BackupError("pg_restore is not installed (Debian: postgresql-client).")
    volumes = [workspace["volume"] for workspace in manifest["workspaces"]]
    for session in _sessions_with(volumes):
        _refuse_running(session)
    summaries = {}
    for workspace in manifest["workspaces"]:
        with (directory / "workspaces" / workspace["file"]).open("rb") as archive:
            summaries[workspace["volume"]] = _read_archive(archive)
    if not force:
        runtime = get_runtime()
        for volume in volumes:
            if runtime.volume_has_files(specs.volume_helper_spec(volume_name=volume)):
                raise WorkspaceNotEmpty(f"{volume} already has files; nothing was restored (use --force).")

    report.actions.append(f"replace the {database['engine']} database with {database['file']}")
    if not dry_run:
        _database_restore(directory / database["file"], engine=database["engine"])
    sessions = {session.volume_name: session for session in _sessions_with(volumes)}  # restored rows
    for workspace in manifest["workspaces"]:
        with (directory / "workspaces" / workspace["file"]).open("rb") as archive:
            report.actions.append(
                _restore_volume(
                    volume=workspace["volume"],
                    session=sessions.get(workspace["volume"]),
                    archive=archive,
                    summary=summaries[workspace["volume"]],
                    force=force,
                    dry_run=dry_run,
                )
            )
    # The restored rows describe containers of another engine's past: make them agree with this one.
    report.actions.append("reconcile the sessions with the engine")
    if not dry_run:
        sessions_reconcile()
    return report


def _sessions_with(volumes: list[str]) -> list[Session]:
    """The sessions of these volumes in the database as it is now (none in a fresh database)."""
    if Session._meta.db_table not in connection.introspection.table_names():
        return []
    return list(Session.objects.filter(volume_name__in=volumes))


def _database_restore(path: Path, *, engine: str) -> None:
    settings_dict = connection.settings_dict
    connection.close()
    if engine == "sqlite":
        shutil.copyfile(path, settings_dict["NAME"])
        return
    _run(
        ["pg_restore", "--clean", "--if-exists", "--no-owner", *_pg_args(settings_dict), str(path)],
        env={**_base_env(), "PGPASSWORD": settings_dict.get("PASSWORD") or ""},
    )
