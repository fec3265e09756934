"""Backups and restores on the real engine and the real database: checksums equal afterwards."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import docker
import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from sessions_app import services
from sessions_app.models import Session
from tests.conftest import REPO_ROOT, remove_test_sandboxes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.docker]

ENGINE = docker.from_env()
FILES = {"main.py": "print('backed up')\n", "src/deep/data.bin": "\x00\x01binary\xff", ".hidden": "dot\n"}


def _fill(session) -> dict[str, str]:
    for path, content in FILES.items():
        script = (
            f"import os; os.makedirs(os.path.dirname('{path}') or '.', exist_ok=True); "
            f"open('{path}', 'w').write({content!r})"
        )
        assert (
            services.session_exec(
                session=session, argv=["python3", "-c", script], timeout=20, output_limit=4096
            ).exit_code
            == 0
        )
    return _checksums(session.volume_name)


def _checksums(volume: str) -> dict[str, str]:
    """sha256 of every file in a volume, read by a container of its own (not through VibeCode)."""
    output = ENGINE.containers.run(
        "vibecode-sandbox:latest",
        [
            "sh",
            "-c",
            "cd /data && find . -path ./.home -prune -o -type f -print0 | xargs -0 sha256sum | sort",
        ],
        volumes={volume: {"bind": "/data", "mode": "ro"}},
        network_mode="none",
        remove=True,
    )
    return dict(line.split()[::-1] for line in output.decode().splitlines())


def test_a_workspace_backs_up_and_restores_with_checksums_equal(alice, tmp_path, sandboxes):
    session = services.session_create(user=alice, name="keep me")
    before = _fill(session)
    assert len(before) == 3
    archive = tmp_path / "ws.tar.gz"
    call_command("backup_workspace", session.public_id, "--output", str(archive))

    # Restoring over files that exist is refused, and nothing changes.
    with pytest.raises(CommandError, match="--force"):
        call_command("restore_workspace", str(archive), "--into", session.public_id)

    # Into a new session of the same user.
    call_command("restore_workspace", str(archive), "--new-session-for", "alice")
    restored = Session.objects.exclude(pk=session.pk).get(owner=alice)
    assert _checksums(restored.volume_name) == before

    # Over the original, forced, after the user broke things: back to the backup exactly.
    services.session_exec(
        session=session,
        argv=["sh", "-c", "rm -rf /workspace/src; echo new > /workspace/extra"],
        timeout=10,
        output_limit=4096,
    )
    call_command("restore_workspace", str(archive), "--into", session.public_id, "--force")
    assert _checksums(session.volume_name) == before


def test_everything_restores_onto_a_fresh_database_and_fresh_volumes(alice, tmp_path, sandboxes):
    session = services.session_create(user=alice, name="everything")
    before = _fill(session)
    backup = tmp_path / "backup"
    call_command("backup_all", "--output", str(backup))
    assert (backup / "manifest.json").exists()

    # A fresh database, and the engine loses every container and volume of this instance.
    settings_dict = connection.settings_dict
    fresh = f"{settings_dict['NAME']}_fresh"
    admin = f"postgresql://{settings_dict['USER']}@{settings_dict['HOST']}:{settings_dict['PORT']}/postgres"
    with psycopg.connect(admin, autocommit=True) as pg:
        pg.execute(f'DROP DATABASE IF EXISTS "{fresh}"')
        pg.execute(f'CREATE DATABASE "{fresh}"')
    remove_test_sandboxes()
    fresh_url = admin.rsplit("/", 1)[0] + f"/{fresh}"
    env = {**os.environ, "DATABASE_URL": fresh_url}
    restored = subprocess.run(
        [sys.executable, "manage.py", "restore_all", str(backup)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert restored.returncode == 0, restored.stderr

    with psycopg.connect(fresh_url) as pg:
        users = [row[0] for row in pg.execute("SELECT username FROM auth_user")]
        rows = list(pg.execute("SELECT public_id, name, status, volume_name FROM sessions_app_session"))
    assert users == ["alice"]
    assert [(r[0], r[1]) for r in rows] == [(session.public_id, "everything")]
    assert rows[0][2] == "suspended", "the restored session waits to be resumed"
    assert _checksums(session.volume_name) == before

    # A second restore over those files is refused without --force.
    again = subprocess.run(
        [sys.executable, "manage.py", "restore_all", str(backup)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode != 0 and "--force" in again.stderr
    with psycopg.connect(admin, autocommit=True) as pg:
        pg.execute(f'DROP DATABASE "{fresh}" WITH (FORCE)')


def test_a_corrupted_backup_is_refused_before_anything_changes(alice, tmp_path, sandboxes):
    session = services.session_create(user=alice, name="x")
    _fill(session)
    backup = tmp_path / "backup"
    call_command("backup_all", "--output", str(backup))
    archive = backup / "workspaces" / f"{session.public_id}.tar.gz"
    archive.write_bytes(archive.read_bytes()[:-10])
    with pytest.raises(CommandError, match="checksum"):
        call_command("restore_all", str(backup), "--force")
    assert hashlib.sha256(b"x").hexdigest()  # the database was not touched: alice's session is still there
    assert Session.objects.filter(public_id=session.public_id).exists()
