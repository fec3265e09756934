"""Disk quotas of workspaces (issue 13), on the real engine and the checkout's btrfs filesystem
(``scripts/setup.sh`` mounts it at var/workspaces): a workspace cannot write past its quota, a save
past it answers 507 and keeps the old file, the others are unaffected, stats report the disk used,
and a delete removes the subvolume and its qgroup."""

from __future__ import annotations

import base64
import io
import os
import subprocess
import time

import docker
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.checks import run_checks

from sessions_app import services
from sessions_app.models import Quota, Session
from sessions_app.runtime import btrfs
from tests.conftest import ARTIFACTS
from tests.e2e.conftest import console, create_session_via_api, open_ide, signed_in  # noqa: F401

ENGINE = docker.from_env()
MiB = 2**20
SMALL_MB = 64


def _create(api, name="disk") -> Session:
    response = api.post("/api/vibecode/sessions/create", {"name": name}, format="json")
    assert response.status_code == 201, response.content
    return Session.objects.get(public_id=response.json()["session_id"])


def _sh(session: Session, script: str, timeout: float = 60):
    return services.session_exec(
        session=session, argv=["sh", "-c", script], timeout=timeout, output_limit=1 << 20
    )


def _subvolume(session: Session) -> str:
    return (ENGINE.api.inspect_volume(session.volume_name).get("Options") or {}).get("device") or ""


def _save(api, session: Session, path: str, content: bytes):
    body = {"path": path, "content": base64.b64encode(content).decode(), "encoding": "base64"}
    return api.put(f"/api/vibecode/sessions/{session.public_id}/files/content", body, format="json")


def _wait_for_stats(api, session: Session, condition, timeout: float = 45.0) -> dict:
    """The kernel's qgroup counters follow at the next transaction commit: poll, never sleep."""
    deadline = time.monotonic() + timeout
    while True:
        stats = api.get(f"/api/vibecode/sessions/{session.public_id}/stats").json()
        if condition(stats) or time.monotonic() > deadline:
            return stats
        time.sleep(0.25)


@pytest.fixture
def small_quota(alice) -> None:
    Quota.objects.create(user=alice, disk_mb=SMALL_MB)


# --- the filesystem make test runs on --------------------------------------------------------------


def test_make_test_runs_with_disk_quotas_on():
    root = settings.VIBECODE_WORKSPACES_DIR
    assert root, "scripts/setup.sh mounts var/workspaces; VIBECODE_WORKSPACES_DIR must point there"
    assert btrfs.problems(root) == []
    assert not [m for m in run_checks() if m.id in {"vibecode.W013", "vibecode.E013"}]


def test_the_system_checks_warn_without_quotas_and_refuse_a_filesystem_that_cannot_hold_them(
    settings, tmp_path
):
    settings.VIBECODE_WORKSPACES_DIR = ""
    assert [m.id for m in run_checks() if m.id.endswith("013")] == ["vibecode.W013"]
    settings.VIBECODE_WORKSPACES_DIR = str(tmp_path)  # not btrfs
    errors = [m for m in run_checks() if m.id == "vibecode.E013"]
    assert len(errors) == 1 and "not a btrfs filesystem" in errors[0].msg


# --- enforcement ---------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.docker
def test_a_workspace_cannot_write_past_its_quota_and_another_still_can(
    alice_api, bob_api, small_quota, sandboxes
):
    session = _create(alice_api)
    assert alice_api.get(f"/api/vibecode/sessions/{session.public_id}").json()["disk_mb"] == SMALL_MB
    path = _subvolume(session)
    assert btrfs.is_under(path, settings.VIBECODE_WORKSPACES_DIR) and btrfs.is_subvolume(path)
    assert btrfs.workspace_usage(path).limit_bytes == SMALL_MB * MiB

    full = _sh(session, "dd if=/dev/zero of=/workspace/big bs=1M count=100 2>&1; echo exit=$?")
    out = full.stdout.decode()
    assert "Disk quota exceeded" in out or "No space left" in out, out
    assert "exit=0" not in out
    size = int(_sh(session, "stat -c %s /workspace/big").stdout)
    assert size <= SMALL_MB * MiB
    # Nothing more fits, in any file.
    again = _sh(session, "head -c 2000000 /dev/zero > /workspace/more; echo exit=$?").stdout.decode()
    assert "exit=0" not in again

    # bob's workspace (the default quota) and the host are unaffected.
    other = _create(bob_api, "bystander")
    assert bob_api.get(f"/api/vibecode/sessions/{other.public_id}").json()["disk_mb"] == 10240
    wrote = _sh(other, "dd if=/dev/zero of=/workspace/f bs=1M count=80 2>&1 && stat -c %s /workspace/f")
    assert wrote.exit_code == 0 and wrote.stdout.decode().split()[-1] == str(80 * MiB)

    # Deleting files frees the space again: the user is never stuck.
    freed = _sh(session, "rm /workspace/big && head -c 1000000 /dev/zero > /workspace/small && echo ok")
    assert freed.stdout == b"ok\n"


@pytest.mark.django_db
@pytest.mark.docker
def test_saving_past_the_quota_answers_507_and_keeps_the_old_content(alice_api, small_quota, sandboxes):
    session = _create(alice_api)
    assert _save(alice_api, session, "notes.txt", b"the old content\n").status_code == 200
    _sh(session, "dd if=/dev/zero of=/workspace/fill bs=1M count=100 2>/dev/null; true")

    response = _save(alice_api, session, "notes.txt", b"x" * (3 * MiB))
    assert response.status_code == 507, response.content
    body = response.json()
    assert body["code"] == "no_space" and "out of space" in body["detail"]
    read = alice_api.get(f"/api/vibecode/sessions/{session.public_id}/files/content", {"path": "notes.txt"})
    assert read.json()["content"] == "the old content\n"
    # The helper's temporary file is gone too.
    leftovers = _sh(session, "ls -A /workspace | grep -c vibecode || true").stdout.decode().strip()
    assert leftovers == "0"


@pytest.mark.django_db
@pytest.mark.docker
def test_an_upload_past_the_quota_answers_507_and_leaves_no_partial_file(alice_api, small_quota, sandboxes):
    session = _create(alice_api)
    _sh(session, "dd if=/dev/zero of=/workspace/fill bs=1M count=100 2>/dev/null; true")
    upload = alice_api.post(
        f"/api/vibecode/sessions/{session.public_id}/files/upload",
        {"path": "in", "files": [io.BytesIO(b"y" * (4 * MiB))], "relative_paths": ["big.bin"]},
        format="multipart",
    )
    assert upload.status_code == 507, upload.content
    assert upload.json()["code"] == "no_space"
    listing = _sh(session, "ls -A /workspace /workspace/in 2>/dev/null").stdout.decode()
    assert "big.bin" not in listing and "vibecode" not in listing, listing


@pytest.mark.django_db
@pytest.mark.docker
def test_stats_report_the_disk_used_and_the_quota(alice_api, small_quota, sandboxes):
    session = _create(alice_api)
    _sh(session, "head -c 20000000 /dev/urandom > /workspace/data && sync -f /workspace/data")
    stats = _wait_for_stats(alice_api, session, lambda s: (s["disk_bytes"] or 0) >= 20_000_000)
    assert 20_000_000 <= stats["disk_bytes"] < 30 * MiB
    assert stats["disk_limit_bytes"] == SMALL_MB * MiB


@pytest.mark.django_db
@pytest.mark.docker
def test_delete_removes_the_subvolume_and_its_qgroup(alice_api, small_quota, sandboxes):
    session = _create(alice_api)
    _sh(session, "echo data > /workspace/file")
    path = _subvolume(session)
    root_id = btrfs.root_id(path)
    assert root_id and btrfs.qgroup_exists(path, root_id)

    response = alice_api.delete(f"/api/vibecode/sessions/{session.public_id}?force=true")
    assert response.status_code == 204, response.content
    assert not os.path.exists(path)
    assert not ENGINE.volumes.list(filters={"name": session.volume_name})
    # The kernel drops a deleted subvolume's qgroup once it has cleaned the subvolume up.
    root = settings.VIBECODE_WORKSPACES_DIR
    # The cleaner runs after transaction commits, and the qgroup goes once its counters reach
    # zero at a later one: ask for commits until then (8-30 s here), never a fixed sleep.
    deadline = time.monotonic() + 150
    while btrfs.qgroup_exists(root, root_id) and time.monotonic() < deadline:
        subprocess.run(["btrfs", "filesystem", "sync", root], check=True, timeout=60)
        time.sleep(0.5)
    assert not btrfs.qgroup_exists(root, root_id)
    # A second delete of the storage is a no-op.
    btrfs.workspace_delete(path=path)


@pytest.mark.django_db
@pytest.mark.docker
def test_a_workspace_made_without_a_quota_keeps_working_unlimited(alice_api, settings, sandboxes):
    with_quotas = settings.VIBECODE_WORKSPACES_DIR
    settings.VIBECODE_WORKSPACES_DIR = ""  # as before quotas existed
    session = _create(alice_api, "old")
    assert alice_api.get(f"/api/vibecode/sessions/{session.public_id}").json()["disk_mb"] is None
    _sh(session, "echo kept > /workspace/file")
    settings.VIBECODE_WORKSPACES_DIR = with_quotas
    assert _subvolume(session) == ""

    assert alice_api.post(f"/api/vibecode/sessions/{session.public_id}/suspend").status_code == 200
    ENGINE.api.remove_container(session.container_name, force=True)  # resume makes a new one
    assert alice_api.post(f"/api/vibecode/sessions/{session.public_id}/resume").status_code == 200
    session.refresh_from_db()
    assert _sh(session, "cat /workspace/file").stdout == b"kept\n"
    assert _subvolume(session) == ""  # still the plain volume it was
    stats = alice_api.get(f"/api/vibecode/sessions/{session.public_id}/stats").json()
    assert stats["disk_bytes"] is None and stats["disk_limit_bytes"] is None
    assert alice_api.delete(f"/api/vibecode/sessions/{session.public_id}?force=true").status_code == 204
    assert not ENGINE.volumes.list(filters={"name": session.volume_name})


# --- in the browser --------------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.docker
@pytest.mark.django_db(transaction=True)
def test_the_dashboard_and_the_ide_status_bar_show_the_disk_meter_and_warn_at_90_percent(
    signed_in,  # noqa: F811
    daphne_server,
    console,  # noqa: F811
):
    page = signed_in
    url = daphne_server.url
    Quota.objects.create(user=get_user_model().objects.get(username="alice"), disk_mb=SMALL_MB)
    session = Session.objects.get(public_id=create_session_via_api(page, url))
    # 60 of 64 MB: past the 90 % warning.
    _sh(session, "head -c 62914560 /dev/zero > /workspace/fill && sync -f /workspace/fill")

    page.goto(url + "/")
    warn = page.locator(f"#session-{session.public_id} .meter-disk.meter-warn")
    warn.wait_for(timeout=45000)  # the dashboard polls every 5 s; the counters follow the commit
    assert "/ 64 MB" in warn.inner_text() and "almost full" in warn.inner_text()
    assert "64 MB disk" in page.locator(f"#session-{session.public_id} [data-testid=disk-quota]").inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-disk-meter.png"))

    open_ide(page, url, session.public_id)
    disk = page.locator("[data-testid=status-disk].disk-warn")
    disk.wait_for(timeout=20000)
    assert "/ 64 MB" in disk.inner_text() and "almost full" in disk.inner_text()
    page.screenshot(path=str(ARTIFACTS / "ide-disk-meter.png"))
    assert console.unexpected() == []
