"""Backups and restores on the real engine and the real database: checksums equal afterwards,
running workspaces copied consistently and never left paused, dry runs that change nothing."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import time
import uuid

import docker
import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from docker.errors import NotFound

from sessions_app import services, specs
from sessions_app.models import Session
from sessions_app.runtime import get_runtime
from sessions_app.runtime.docker import DockerRuntime, docker_volume_helper_kwargs
from sessions_app.runtime.errors import RuntimeFailure, VolumeNotEmpty, VolumeNotFound
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
    session = services.session_suspend(session=session)
    with pytest.raises(CommandError, match="--force"):
        call_command("restore_workspace", str(archive), "--into", session.public_id)
    session = services.session_resume(session=session)

    # Into a new session of the same user.
    call_command("restore_workspace", str(archive), "--new-session-for", "alice")
    restored = Session.objects.exclude(pk=session.pk).get(owner=alice)
    assert _checksums(restored.volume_name) == before

    assert restored.status == "running", "the new session is ready to use"

    # Over the original, forced, after the user broke things: back to the backup exactly.
    services.session_exec(
        session=session,
        argv=["sh", "-c", "rm -rf /workspace/src; echo new > /workspace/extra"],
        timeout=10,
        output_limit=4096,
    )
    session = services.session_suspend(session=session)
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
    labels = ENGINE.volumes.get(session.volume_name).attrs["Labels"]
    assert labels["vibecode.session_id"] == session.public_id, "made as its sandbox's volume would be"

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


def run(command: str, *args: str) -> str:
    out = io.StringIO()
    call_command(command, *args, stdout=out)
    return out.getvalue()


def poll(condition, *, timeout: float = 30.0, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def read(session, path: str) -> str:
    result = services.session_exec(session=session, argv=["cat", path], timeout=10, output_limit=4096)
    return result.stdout.decode() if result.exit_code == 0 else ""


WRITER = """
import os
i = 0
while True:
    i += 1
    for name in ("a", "z"):  # a, then z: at any instant z == a or z == a - 1
        with open(name + ".tmp", "w") as f:
            f.write(str(i))
        os.replace(name + ".tmp", name)
"""


def test_a_running_workspace_being_written_to_is_backed_up_consistently(alice, tmp_path, sandboxes):
    session = services.session_create(user=alice, name="busy")
    # The engine reads a, then 16 MB of m, then z: unpaused, z would be far ahead of a.
    services.session_exec(
        session=session,
        argv=["sh", "-c", "head -c 16000000 /dev/urandom > /workspace/m"],
        timeout=30,
        output_limit=4096,
    )
    exec_id = ENGINE.api.exec_create(
        session.container_id, ["python3", "-c", WRITER], user="1000:1000", workdir="/workspace"
    )["Id"]
    ENGINE.api.exec_start(exec_id, detach=True)
    poll(lambda: read(session, "/workspace/z").isdigit(), what="the writer to start")

    archive = tmp_path / "busy.tar.gz"
    run("backup_workspace", session.public_id, "--output", str(archive))

    with tarfile.open(archive) as tar:
        a = int(tar.extractfile("./a").read())
        z = int(tar.extractfile("./z").read())
        assert tar.getmember("./m").size == 16_000_000
    assert z in {a, a - 1}, f"an inconsistent copy: a={a}, z={z}"
    state = ENGINE.api.inspect_container(session.container_id)["State"]
    assert state["Running"] and not state["Paused"]
    poll(lambda: int(read(session, "/workspace/a") or 0) > a, what="the writer to carry on after the backup")


def test_a_failed_backup_never_leaves_the_sandbox_paused(alice, tmp_path, sandboxes, monkeypatch):
    session = services.session_create(user=alice, name="fails")
    _fill(session)
    seen = {}

    def broken_export(self, spec):
        seen["paused"] = ENGINE.api.inspect_container(session.container_id)["State"]["Paused"]
        yield b"\0" * 512
        raise RuntimeFailure("The engine went away mid-copy.")

    monkeypatch.setattr(DockerRuntime, "export_volume", broken_export)
    output = tmp_path / "never.tar.gz"
    with pytest.raises(CommandError, match="went away"):
        run("backup_workspace", session.public_id, "--output", str(output))
    assert seen == {"paused": True}, "the copy ran while the sandbox was paused"
    state = ENGINE.api.inspect_container(session.container_id)["State"]
    assert state["Running"] and not state["Paused"]
    assert list(tmp_path.iterdir()) == [], "no half-written backup is left behind"
    assert read(session, "/workspace/main.py") == FILES["main.py"]


def test_restoring_into_a_running_session_is_refused(alice, tmp_path, sandboxes):
    session = services.session_create(user=alice, name="busy")
    before = _fill(session)
    archive = tmp_path / "ws.tar.gz"
    run("backup_workspace", session.public_id, "--output", str(archive))
    for extra in ([], ["--dry-run"]):
        with pytest.raises(CommandError, match="is running: suspend it"):
            run("restore_workspace", str(archive), "--into", session.public_id, "--force", *extra)
    assert _checksums(session.volume_name) == before


def test_dry_runs_check_everything_and_change_nothing(alice, tmp_path, sandboxes):
    session = services.session_create(user=alice, name="original")
    before = _fill(session)
    archive = tmp_path / "ws.tar.gz"
    run("backup_workspace", session.public_id, "--output", str(archive))
    backup = tmp_path / "backup"
    run("backup_all", "--output", str(backup))
    services.session_exec(
        session=session, argv=["sh", "-c", "rm -rf src; echo new > extra"], timeout=10, output_limit=4096
    )
    session = services.session_suspend(session=session)
    Session.objects.filter(pk=session.pk).update(name="renamed since")
    changed = _checksums(session.volume_name)
    assert changed != before

    out = run("restore_workspace", str(archive), "--into", session.public_id, "--force", "--dry-run")
    assert "dry run: would replace the files of volume" in out and "nothing was changed" in out
    with pytest.raises(CommandError, match="--force"):  # refused as the real restore would be
        run("restore_workspace", str(archive), "--into", session.public_id, "--dry-run")
    out = run("restore_workspace", str(archive), "--new-session-for", "alice", "--dry-run")
    assert "would create a session" in out
    out = run("restore_all", str(backup), "--force", "--dry-run")
    assert "[dry run] replace the postgresql database" in out
    assert f"[dry run] replace the files of volume {session.volume_name}" in out
    with pytest.raises(CommandError, match="--force"):
        run("restore_all", str(backup), "--dry-run")

    assert _checksums(session.volume_name) == changed
    assert list(Session.objects.values_list("name", "status")) == [("renamed since", "suspended")]
    assert ENGINE.api.inspect_container(session.container_id)["State"]["Status"] == "exited"

    # The real thing, for contrast.
    run("restore_workspace", str(archive), "--into", session.public_id, "--force")
    assert _checksums(session.volume_name) == before


def test_volumes_cross_the_runtime_whole_and_are_never_overwritten_unasked(sandboxes):
    runtime = get_runtime()
    spec = specs.volume_helper_spec(volume_name=f"vibecode-backup-test-{uuid.uuid4().hex[:8]}-ws")
    assert runtime.volume_has_files(spec) is False
    with pytest.raises(NotFound):
        ENGINE.volumes.get(spec.volume_name)  # asking did not create it
    with pytest.raises(VolumeNotFound):
        next(runtime.export_volume(spec))

    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w") as tar:
        info = tarfile.TarInfo("./notes.txt")
        info.size, info.uid, info.gid = 5, 1000, 1000
        tar.addfile(info, io.BytesIO(b"hello"))
    runtime.import_volume(spec, [packed.getvalue()], replace=False)
    assert ENGINE.volumes.get(spec.volume_name).attrs["Labels"]["vibecode.instance"].startswith("test")
    assert runtime.volume_has_files(spec) is True
    with pytest.raises(VolumeNotEmpty):
        runtime.import_volume(spec, [packed.getvalue()], replace=False)

    exported = io.BytesIO(b"".join(runtime.export_volume(spec)))
    with tarfile.open(fileobj=exported) as tar:
        notes = tar.getmember("./notes.txt")
        assert (tar.extractfile(notes).read(), notes.uid) == (b"hello", 1000)
    helpers = ENGINE.containers.list(all=True, filters={"label": "vibecode.role=backup"})
    assert [c for c in helpers if spec.volume_name in str(c.attrs["Mounts"])] == [], "helpers are removed"


def test_backup_helpers_are_hardened_like_sandboxes():
    spec = specs.volume_helper_spec(volume_name="vibecode-1-abc-ws")
    for writable in (False, True):
        kwargs = docker_volume_helper_kwargs(spec, writable=writable)
        assert kwargs["network_mode"] == "none"
        assert kwargs["cap_drop"] == ["ALL"]
        assert kwargs["security_opt"] == ["no-new-privileges:true"]
        assert kwargs["read_only"] is True
        assert kwargs["user"] == "1000:1000"
        assert kwargs["pids_limit"] == 64 and kwargs["mem_limit"] == kwargs["memswap_limit"] == 256 << 20
        assert kwargs["labels"]["vibecode.role"] == "backup"
        assert "vibecode.session_id" not in kwargs["labels"], "cleanup must not take it for an orphan sandbox"
        assert kwargs["volumes"] == {
            "vibecode-1-abc-ws": {"bind": "/workspace", "mode": "rw" if writable else "ro"}
        }
