"""The services' logic on an in-memory runtime (tests/fake_runtime.py): claims, state versions,
what deletes a volume, reconcile and cleanup, pauses around backups. The same behaviours are
tested on the real engine in test_lifecycle.py, test_operations.py and test_backups.py; these
pin the logic down quickly and make the failure cases easy to provoke."""

from __future__ import annotations

import gzip
import io
import tarfile
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from sessions_app import backups, operations, services, specs
from sessions_app.errors import QuotaExceeded, RuntimeFailure, SessionBusy, SessionRunning, VolumeMissing
from sessions_app.models import Quota, Session, SessionEvent
from tests.fake_runtime import FakeRuntime, install

pytestmark = pytest.mark.django_db


@pytest.fixture
def runtime(monkeypatch) -> FakeRuntime:
    return install(monkeypatch)


def snapshot(runtime: FakeRuntime) -> dict[str, Any]:
    return {
        "rows": sorted(Session.objects.values_list("public_id", "status", "container_id", "state_version")),
        "events": SessionEvent.objects.count(),
        "containers": sorted((c.name, c.state) for c in runtime.containers.values()),
        "volumes": sorted(runtime.volumes),
    }


def test_create_claims_a_row_then_makes_a_running_sandbox(alice, runtime):
    session = services.session_create(user=alice, name="first")
    assert session.status == "running"
    container = runtime.containers[session.container_id]
    assert (container.name, container.state) == (session.container_name, "running")
    assert container.labels["vibecode.session_id"] == session.public_id
    assert session.volume_name in runtime.volumes
    assert list(SessionEvent.objects.values_list("action", flat=True)) == ["create"]


def test_create_over_quota_is_refused_before_the_runtime_is_called(alice, runtime):
    Quota.objects.create(user=alice, max_sessions=1)
    services.session_create(user=alice)
    runtime.calls.clear()
    with pytest.raises(QuotaExceeded) as refused:
        services.session_create(user=alice)
    assert refused.value.extra == {"limit": "max_sessions", "value": 1}
    assert runtime.calls == []
    assert Session.objects.count() == 1


def test_a_failed_create_leaves_an_error_row_no_container_and_the_volume(alice, runtime):
    runtime.fail["create"] = RuntimeFailure("no space left")
    with pytest.raises(RuntimeFailure):
        services.session_create(user=alice, name="doomed")
    session = Session.objects.get()
    assert session.status == "error" and "no space left" in session.last_error
    assert runtime.containers == {}
    assert "remove" in runtime.calls


def test_suspend_and_resume_move_the_state_version_per_claim(alice, runtime):
    session = services.session_create(user=alice)
    version = session.state_version
    session = services.session_suspend(session=session)
    assert (session.status, session.state_version) == ("suspended", version + 1)
    assert runtime.containers[session.container_id].state == "stopped"
    assert services.session_suspend(session=session).state_version == version + 1, "a no-op"
    session = services.session_resume(session=session)
    # Two claims: "resuming" (before the runtime is called), then "running".
    assert (session.status, session.state_version) == ("running", version + 3)
    assert runtime.containers[session.container_id].state == "running"
    assert services.session_resume(session=session).state_version == version + 3, "a no-op"


def test_a_stale_copy_loses_the_claim_and_the_runtime_is_not_called(alice, runtime):
    session = services.session_create(user=alice)
    stale = Session.objects.get(pk=session.pk)
    services.session_suspend(session=session)
    services.session_resume(session=session)
    runtime.calls.clear()
    stale.status = "running"
    with pytest.raises(SessionBusy):
        services.session_suspend(session=stale)
    assert runtime.calls == []
    assert Session.objects.get(pk=session.pk).status == "running"


def test_a_failed_stop_gives_the_session_back_its_state(alice, runtime):
    session = services.session_create(user=alice)
    runtime.fail["stop"] = RuntimeFailure("engine said no")
    with pytest.raises(RuntimeFailure):
        services.session_suspend(session=session)
    assert Session.objects.get(pk=session.pk).status == "running"


def test_resume_remakes_a_vanished_container_on_the_same_volume(alice, runtime):
    session = services.session_suspend(session=services.session_create(user=alice))
    runtime.volumes[session.volume_name] = {"main.py": b"print(1)"}
    del runtime.containers[session.container_id]
    session = services.session_resume(session=session)
    assert session.status == "running"
    assert runtime.containers[session.container_id].volume_name == session.volume_name
    assert runtime.volumes[session.volume_name] == {"main.py": b"print(1)"}


def test_resume_without_a_volume_says_the_files_are_gone(alice, runtime):
    session = services.session_suspend(session=services.session_create(user=alice))
    del runtime.containers[session.container_id]
    del runtime.volumes[session.volume_name]
    with pytest.raises(VolumeMissing):
        services.session_resume(session=session)
    assert Session.objects.get(pk=session.pk).status == "error"


def test_only_an_explicit_delete_removes_the_volume(alice, runtime):
    session = services.session_create(user=alice)
    runtime.volumes[session.volume_name] = {"keep.txt": b"mine"}
    session = services.session_suspend(session=session)
    session = services.session_resume(session=session)
    Session.objects.filter(pk=session.pk).update(last_activity_at=timezone.now() - timedelta(days=9))
    operations.sessions_cleanup()
    operations.sessions_reconcile()
    assert runtime.volumes[session.volume_name] == {"keep.txt": b"mine"}

    session.refresh_from_db()
    with pytest.raises(SessionRunning):  # cleanup suspended it; resume, then delete without force
        services.session_delete(session=services.session_resume(session=session))
    assert session.volume_name in runtime.volumes
    services.session_delete(session=Session.objects.get(pk=session.pk), force=True)
    assert session.volume_name not in runtime.volumes
    assert runtime.containers == {}
    assert not Session.objects.exists()
    assert SessionEvent.objects.filter(action="delete", session_public_id=session.public_id).exists()


def test_reconcile_fixes_every_drift_once_and_a_second_run_changes_nothing(alice, bob, runtime, settings):
    stopped = services.session_create(user=alice, name="container stopped")
    runtime.containers[stopped.container_id].state = "stopped"
    vanished = services.session_create(user=alice, name="everything vanished")
    del runtime.containers[vanished.container_id]
    del runtime.volumes[vanished.volume_name]
    woke = services.session_suspend(session=services.session_create(user=bob, name="woke up"))
    runtime.containers[woke.container_id].state = "running"
    deleting = services.session_create(user=bob, name="half deleted")
    Session.objects.filter(pk=deleting.pk).update(status="deleting")
    orphan = runtime.create(specs.sandbox_spec(_unsaved_session(alice, "orphan0001")))  # its row was lost

    dry = operations.sessions_reconcile(dry_run=True)
    assert len(dry.actions) == 5
    before = snapshot(runtime)
    assert operations.sessions_reconcile(dry_run=True).actions == dry.actions
    assert snapshot(runtime) == before, "a dry run changes nothing"

    report = operations.sessions_reconcile()
    assert report.actions == dry.actions
    statuses = dict(Session.objects.values_list("name", "status"))
    assert statuses == {
        "container stopped": "suspended",
        "everything vanished": "error",
        "woke up": "suspended",
    }
    assert runtime.containers[woke.container_id].state == "stopped"
    assert orphan.object_id not in runtime.containers
    assert orphan.volume_name in runtime.volumes, "an orphan's volume is kept"
    assert deleting.volume_name not in runtime.volumes, "the delete that was asked for is finished"

    settled = snapshot(runtime)
    assert operations.sessions_reconcile().actions == []
    assert snapshot(runtime) == settled


def _unsaved_session(user: Any, public_id: str) -> Session:
    return Session(
        public_id=public_id,
        owner=user,
        name="orphan",
        container_name=specs.container_name(user_id=user.pk, public_id=public_id),
        volume_name=specs.volume_name(user_id=user.pk, public_id=public_id),
        image="vibecode-sandbox:latest",
        limits={"memory_mb": 256, "cpus": 1, "pids": 64},
    )


def test_cleanup_suspends_only_idle_sessions_and_a_second_run_has_nothing_to_do(alice, bob, runtime):
    idle = services.session_create(user=alice, name="idle")
    busy = services.session_create(user=bob, name="busy")
    Session.objects.filter(pk=idle.pk).update(last_activity_at=timezone.now() - timedelta(hours=5))

    dry = operations.sessions_cleanup(dry_run=True)
    assert dry.counts["suspended"] == 1
    assert Session.objects.get(pk=idle.pk).status == "running"

    report = operations.sessions_cleanup()
    assert report.counts["suspended"] == 1
    assert Session.objects.get(pk=idle.pk).status == "suspended"
    assert runtime.containers[idle.container_id].state == "stopped"
    assert Session.objects.get(pk=busy.pk).status == "running"
    assert SessionEvent.objects.filter(session=idle, action="cleanup").exists()
    assert operations.sessions_cleanup().actions == []


def test_keep_working_between_listing_and_acting_wins_over_cleanup(alice, runtime, monkeypatch):
    session = services.session_create(user=alice)
    Session.objects.filter(pk=session.pk).update(last_activity_at=timezone.now() - timedelta(hours=5))
    listed = operations.sessions_idle()
    services.session_keepalive(session=Session.objects.get(pk=session.pk))
    monkeypatch.setattr(operations, "sessions_idle", lambda **kwargs: listed)
    assert operations.sessions_cleanup().actions == []
    assert Session.objects.get(pk=session.pk).status == "running"


def test_a_backup_pauses_a_running_sandbox_and_unpauses_it_even_when_the_copy_fails(alice, runtime, tmp_path):
    session = services.session_create(user=alice)
    runtime.volumes[session.volume_name] = {"main.py": b"print(1)"}
    backups.workspace_backup(session=session, output=tmp_path / "ok.tar.gz")
    assert runtime.calls[-3:] == ["pause", "export_volume", "unpause"]

    runtime.fail["export_volume"] = RuntimeFailure("lost the engine")
    with pytest.raises(RuntimeFailure):
        backups.workspace_backup(session=session, output=tmp_path / "failed.tar.gz")
    assert runtime.calls[-3:] == ["pause", "export_volume", "unpause"]
    assert runtime.containers[session.container_id].state == "running"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["ok.tar.gz"]


def test_a_restore_refuses_a_running_session_and_a_full_workspace_without_force(alice, runtime, tmp_path):
    session = services.session_create(user=alice)
    runtime.volumes[session.volume_name] = {"main.py": b"old"}
    archive = tmp_path / "ws.tar.gz"
    backups.workspace_backup(session=session, output=archive)
    with pytest.raises(SessionRunning), archive.open("rb") as handle:
        backups.workspace_restore(session=session, archive=handle, force=True)
    session = services.session_suspend(session=session)
    runtime.volumes[session.volume_name] = {"main.py": b"new", "extra": b"x"}
    with pytest.raises(backups.WorkspaceNotEmpty), archive.open("rb") as handle:
        backups.workspace_restore(session=session, archive=handle)
    with archive.open("rb") as handle:
        said = backups.workspace_restore(session=session, archive=handle, force=True, dry_run=True)
    assert said.startswith("replace the files of volume")
    assert runtime.volumes[session.volume_name] == {"main.py": b"new", "extra": b"x"}
    with archive.open("rb") as handle:
        backups.workspace_restore(session=session, archive=handle, force=True)
    assert runtime.volumes[session.volume_name] == {"main.py": b"old"}


def test_a_truncated_archive_is_refused_before_the_workspace_is_touched(alice, runtime, tmp_path):
    session = services.session_suspend(session=services.session_create(user=alice))
    runtime.volumes[session.volume_name] = {"main.py": b"precious"}
    archive = tmp_path / "ws.tar.gz"
    backups.workspace_backup(session=session, output=archive)
    truncated = io.BytesIO(archive.read_bytes()[:-12])
    runtime.calls.clear()
    with pytest.raises(backups.BackupError, match="cannot be read"):
        backups.workspace_restore(session=session, archive=truncated, force=True)
    assert "import_volume" not in runtime.calls
    assert runtime.volumes[session.volume_name] == {"main.py": b"precious"}


def test_a_backup_leaves_a_sandbox_paused_by_someone_else_to_them(alice, runtime, tmp_path):
    session = services.session_create(user=alice)
    runtime.volumes[session.volume_name] = {"main.py": b"print(1)"}
    assert runtime.pause(specs.session_ref(session)) is True  # another backup, still copying
    backups.workspace_backup(session=session, output=tmp_path / "second.tar.gz")
    assert "unpause" not in runtime.calls
    assert runtime.containers[session.container_id].state == "paused"


def test_a_backup_of_a_stopped_sandbox_needs_no_pause(alice, runtime, tmp_path):
    session = services.session_suspend(session=services.session_create(user=alice))
    runtime.volumes[session.volume_name] = {"main.py": b"print(1)"}
    backups.workspace_backup(session=session, output=tmp_path / "stopped.tar.gz")
    assert runtime.calls[-2:] == ["pause", "export_volume"]
    assert runtime.containers[session.container_id].state == "stopped"


def _gzipped_tar(*names: str) -> io.BytesIO:
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb") as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"hi"))
    packed.seek(0)
    return packed


@pytest.mark.parametrize(
    ("archive", "code"),
    [
        (io.BytesIO(b"not a backup at all"), "backup_error"),
        (_gzipped_tar("./fine.txt", "../../etc/cron.d/evil"), "backup_unsafe_path"),
        (_gzipped_tar("/etc/passwd"), "backup_unsafe_path"),
    ],
)
def test_a_bad_archive_is_refused_with_a_stable_code_and_nothing_touched(alice, runtime, archive, code):
    session = services.session_suspend(session=services.session_create(user=alice))
    runtime.volumes[session.volume_name] = {"main.py": b"precious"}
    with pytest.raises(backups.BackupError) as refused:
        backups.workspace_restore(session=session, archive=archive, force=True)
    assert refused.value.code == code
    assert runtime.volumes[session.volume_name] == {"main.py": b"precious"}
