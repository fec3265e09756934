"""Operations on the real Docker engine: reconcile_sessions, cleanup_sessions and
build_sandbox_image, after the crashes and meddling they exist for."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import docker
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils import timezone
from docker.errors import NotFound

import sessions_app.runtime.docker
from sessions_app import services, specs
from sessions_app.models import Quota, Session, SessionEvent, new_public_id
from sessions_app.runtime import docker as docker_backend
from sessions_app.runtime import get_runtime
from sessions_app.selectors import quota_for

pytestmark = [pytest.mark.django_db, pytest.mark.docker]


@pytest.fixture
def own_instance(settings) -> str:
    """This test's sandboxes get an instance label of their own. Reconcile and cleanup remove
    every labelled container they have no row for; with the shared ``test`` label they would
    remove the sandboxes of test runs going on beside this one, and those runs' cleanup ours."""
    settings.VIBECODE_INSTANCE = f"test-ops-{uuid.uuid4().hex[:8]}"
    return settings.VIBECODE_INSTANCE


@pytest.fixture
def sandboxes(own_instance, sandboxes) -> Iterator[None]:
    """conftest's ``sandboxes``, set up after ``own_instance``: it cleans up by this test's label,
    before the label is restored."""
    yield


@pytest.fixture(scope="module")
def engine() -> Iterator[docker.DockerClient]:
    client = docker.DockerClient(base_url=settings.DOCKER_HOST, version=settings.DOCKER_API_VERSION)
    yield client
    client.close()


def run(command: str, *args: str) -> str:
    out = io.StringIO()
    call_command(command, *args, stdout=out)
    return out.getvalue()


def exec_sh(session: Session, script: str) -> bytes:
    session.refresh_from_db()
    result = services.session_exec(
        session=session, argv=["sh", "-c", script], timeout=10, output_limit=1 << 20
    )
    assert result.exit_code == 0, result.stderr
    return result.stdout


def container_state(engine: docker.DockerClient, name: str) -> str:
    """``running``, ``exited``... or ``missing``."""
    try:
        return str(engine.containers.get(name).status)
    except NotFound:
        return "missing"


def volume_exists(engine: docker.DockerClient, name: str) -> bool:
    try:
        engine.volumes.get(name)
    except NotFound:
        return False
    return True


def session_row(user: Any, *, status: str) -> Session:
    """A row as ``session_create`` writes it before calling the runtime; no container, no volume."""
    public_id = new_public_id()
    return Session.objects.create(
        public_id=public_id,
        owner=user,
        name="row only",
        status=status,
        container_name=specs.container_name(user_id=user.pk, public_id=public_id),
        volume_name=specs.volume_name(user_id=user.pk, public_id=public_id),
        image=settings.VIBECODE_SANDBOX_IMAGE,
        limits=quota_for(user_id=user.pk).limits(),
    )


def orphan_container(engine: docker.DockerClient, user: Any) -> tuple[str, str]:
    """What a backend killed in the middle of a create can leave: a labelled container on its
    volume, and no session row. Returns (container name, volume name)."""
    public_id = new_public_id()
    name = specs.container_name(user_id=user.pk, public_id=public_id)
    volume = specs.volume_name(user_id=user.pk, public_id=public_id)
    labels = {
        "app": "vibecode",
        "vibecode.instance": settings.VIBECODE_INSTANCE,
        "vibecode.user_id": str(user.pk),
        "vibecode.session_id": public_id,
    }
    engine.volumes.create(name=volume, labels=labels)
    engine.containers.run(
        settings.VIBECODE_SANDBOX_IMAGE,
        ["sleep", "infinity"],
        name=name,
        labels=labels,
        volumes={volume: {"bind": "/workspace", "mode": "rw"}},
        network_mode="none",
        init=True,
        detach=True,
    )
    return name, volume


def make_stuck_creating(session: Session) -> None:
    Session.objects.filter(pk=session.pk).update(created_at=timezone.now() - timedelta(minutes=3))


def snapshot(engine: docker.DockerClient) -> dict[str, Any]:
    """Everything reconcile and cleanup could change: rows, containers, volumes, audit log."""
    label = f"vibecode.instance={settings.VIBECODE_INSTANCE}"
    return {
        "rows": sorted(
            Session.objects.values_list("public_id", "status", "container_id", "state_version", "last_error")
        ),
        "events": SessionEvent.objects.count(),
        "containers": sorted(
            (c.name, c.status) for c in engine.containers.list(all=True, filters={"label": label})
        ),
        "volumes": sorted(v.name for v in engine.volumes.list(filters={"label": label})),
    }


# --- reconcile_sessions ----------------------------------------------------------------------


def test_reconcile_suspends_a_session_whose_container_was_removed_and_resume_brings_its_files_back(
    alice, engine, sandboxes
):
    session = services.session_create(user=alice)
    exec_sh(session, "echo data > /workspace/f")
    engine.api.remove_container(session.container_id, force=True)  # behind the backend's back

    out = run("reconcile_sessions")

    session.refresh_from_db()
    assert session.status == Session.Status.SUSPENDED
    assert session.container_id == ""
    assert volume_exists(engine, session.volume_name)
    assert f"session {session.public_id}: running -> suspended (container missing)" in out
    assert SessionEvent.objects.filter(session=session, action=SessionEvent.Action.RECONCILE).exists()

    session = services.session_resume(session=session)
    assert session.status == Session.Status.RUNNING
    assert container_state(engine, session.container_name) == "running"
    assert exec_sh(session, "cat /workspace/f") == b"data\n"


def test_reconcile_removes_a_container_that_has_no_session_row_and_keeps_its_volume(alice, engine, sandboxes):
    name, volume = orphan_container(engine, alice)

    out = run("reconcile_sessions")

    assert f"remove orphan container {name}" in out
    assert container_state(engine, name) == "missing"
    assert volume_exists(engine, volume)


@pytest.mark.parametrize(("with_volume", "ends"), [(True, "suspended"), (False, "error")])
def test_reconcile_never_leaves_a_session_stuck_creating(alice, engine, sandboxes, with_volume, ends):
    session = session_row(alice, status=Session.Status.CREATING)
    if with_volume:
        labels = specs.sandbox_labels(user_id=alice.pk, public_id=session.public_id)
        engine.volumes.create(name=session.volume_name, labels=labels)
    make_stuck_creating(session)

    out = run("reconcile_sessions")

    session.refresh_from_db()
    assert session.status == ends
    assert f"session {session.public_id}: creating -> {ends}" in out
    assert volume_exists(engine, session.volume_name) is with_volume
    if ends == "error":
        assert "volume" in session.last_error.lower()
    assert run("reconcile_sessions").strip() == "nothing to do"


def test_reconcile_adopts_the_running_container_of_a_session_stuck_creating(alice, engine, sandboxes):
    # The backend died after the runtime made the container but before it recorded the result.
    session = services.session_create(user=alice)
    container_id = session.container_id
    Session.objects.filter(pk=session.pk).update(status=Session.Status.CREATING, container_id="")
    make_stuck_creating(session)

    run("reconcile_sessions")

    session.refresh_from_db()
    assert (session.status, session.container_id) == (Session.Status.RUNNING, container_id)
    assert exec_sh(session, "echo ok") == b"ok\n"


def test_reconcile_leaves_a_session_being_created_right_now_alone(alice, engine, sandboxes):
    session = session_row(alice, status=Session.Status.CREATING)

    assert run("reconcile_sessions").strip() == "nothing to do"

    session.refresh_from_db()
    assert session.status == Session.Status.CREATING


def test_reconcile_stops_the_container_of_a_suspended_session_started_behind_its_back(
    alice, engine, sandboxes
):
    session = services.session_suspend(session=services.session_create(user=alice))
    engine.api.start(session.container_id)
    assert container_state(engine, session.container_name) == "running"

    out = run("reconcile_sessions")

    assert f"stop container of suspended session {session.public_id}" in out
    assert container_state(engine, session.container_name) == "exited"
    session.refresh_from_db()
    assert session.status == Session.Status.SUSPENDED
    assert volume_exists(engine, session.volume_name)


def test_reconcile_finishes_a_delete_cut_short_after_the_container_was_removed(alice, engine, sandboxes):
    session = services.session_create(user=alice)
    engine.api.remove_container(session.container_id, force=True)
    Session.objects.filter(pk=session.pk).update(status=Session.Status.DELETING)

    out = run("reconcile_sessions")

    assert f"finish deleting session {session.public_id}" in out
    assert not Session.objects.filter(pk=session.pk).exists()
    assert not volume_exists(engine, session.volume_name)


def test_reconciling_twice_the_second_run_has_nothing_to_do(alice, bob, engine, sandboxes):
    gone = services.session_create(user=alice)
    engine.api.remove_container(gone.container_id, force=True)
    woken = services.session_suspend(session=services.session_create(user=bob))
    engine.api.start(woken.container_id)
    stuck = session_row(alice, status=Session.Status.CREATING)
    make_stuck_creating(stuck)
    orphan_container(engine, bob)

    first = run("reconcile_sessions")
    assert first.count("\n") == 5  # four actions and the summary
    assert "reconciled: 4 actions taken" in first
    after_first = snapshot(engine)

    assert run("reconcile_sessions").strip() == "nothing to do"
    assert snapshot(engine) == after_first


# --- dry runs ------------------------------------------------------------------------------


def test_dry_run_changes_nothing(alice, bob, engine, sandboxes):
    gone = services.session_create(user=alice)
    engine.api.remove_container(gone.container_id, force=True)
    idle = services.session_create(user=bob)
    Session.objects.filter(pk=idle.pk).update(last_activity_at=timezone.now() - timedelta(hours=2))
    woken = services.session_suspend(session=services.session_create(user=bob))
    engine.api.start(woken.container_id)
    stuck = session_row(alice, status=Session.Status.CREATING)
    make_stuck_creating(stuck)
    orphan, _ = orphan_container(engine, alice)
    before = snapshot(engine)

    reconcile = run("reconcile_sessions", "--dry-run")
    cleanup = run("cleanup_sessions", "--dry-run", "--idle-minutes", "30")

    assert snapshot(engine) == before
    assert "[dry run] " in reconcile and "nothing was changed" in reconcile
    assert f"[dry run] remove orphan container {orphan}" in reconcile
    assert f"[dry run] suspend idle session {idle.public_id}" in cleanup
    assert "dry run: would suspend 1 idle session, remove 1 orphan container; nothing was changed" in cleanup
    # What the dry run announced is what a real run then does.
    assert run("reconcile_sessions").splitlines()[:-1] == [
        line.removeprefix("[dry run] ") for line in reconcile.splitlines()[:-1]
    ]
    assert snapshot(engine) != before


# --- cleanup_sessions ----------------------------------------------------------------------


def test_cleanup_suspends_idle_sessions_keeps_their_volumes_and_leaves_active_ones_running(
    alice, engine, sandboxes
):
    idle = services.session_create(user=alice)
    exec_sh(idle, "echo data > /workspace/f")
    Session.objects.filter(pk=idle.pk).update(last_activity_at=timezone.now() - timedelta(hours=2))
    active = services.session_create(user=alice)
    orphan, orphan_volume = orphan_container(engine, alice)

    out = run("cleanup_sessions", "--idle-minutes", "30")

    idle.refresh_from_db()
    active.refresh_from_db()
    assert idle.status == Session.Status.SUSPENDED
    assert container_state(engine, idle.container_name) == "exited"
    assert volume_exists(engine, idle.volume_name)
    assert active.status == Session.Status.RUNNING
    assert container_state(engine, active.container_name) == "running"
    assert container_state(engine, orphan) == "missing"
    assert volume_exists(engine, orphan_volume)
    assert out.splitlines()[-1] == (
        "suspended 1 idle session, removed 1 orphan container; volumes are never deleted"
    )
    assert SessionEvent.objects.filter(session=idle, action=SessionEvent.Action.CLEANUP).exists()

    assert run("cleanup_sessions", "--idle-minutes", "30").splitlines() == [
        "suspended 0 idle sessions, removed 0 orphan containers; volumes are never deleted"
    ]
    idle = services.session_resume(session=idle)
    assert exec_sh(idle, "cat /workspace/f") == b"data\n"


def test_cleanup_uses_each_owners_idle_timeout_by_default(alice, bob, engine, sandboxes):
    Quota.objects.create(user=alice, idle_timeout_minutes=10)
    alices = services.session_create(user=alice)
    bobs = services.session_create(user=bob)  # the default timeout: 120 minutes
    Session.objects.update(last_activity_at=timezone.now() - timedelta(minutes=20))

    run("cleanup_sessions")

    alices.refresh_from_db()
    bobs.refresh_from_db()
    assert (alices.status, bobs.status) == (Session.Status.SUSPENDED, Session.Status.RUNNING)


def test_cleanup_with_idle_minutes_zero_suspends_every_running_session(alice, engine, sandboxes):
    session = services.session_create(user=alice)

    out = run("cleanup_sessions", "--idle-minutes", "0")

    session.refresh_from_db()
    assert session.status == Session.Status.SUSPENDED
    assert volume_exists(engine, session.volume_name)
    assert "suspended 1 idle session," in out


def test_cleanup_refuses_a_negative_idle_time():
    with pytest.raises(CommandError, match="negative"):
        run("cleanup_sessions", "--idle-minutes", "-1")


# --- delete ----------------------------------------------------------------------------------


def test_delete_removes_the_volume_of_a_session_whose_container_is_already_gone(alice, engine, sandboxes):
    session = services.session_create(user=alice)
    engine.api.remove_container(session.container_id, force=True)

    services.session_delete(session=session, force=True)

    assert not Session.objects.filter(pk=session.pk).exists()
    assert not volume_exists(engine, session.volume_name)
    # And again, with both already gone: nothing to do, no error.
    get_runtime().remove(specs.session_ref(session), volume=True)


# --- an engine that does not answer --------------------------------------------------------


@pytest.fixture
def unreachable_engine(settings, monkeypatch, tmp_path) -> Iterator[None]:
    monkeypatch.setattr(sessions_app.runtime.docker, "_client", None)
    settings.DOCKER_HOST = f"unix://{tmp_path}/nothing-listens-here.sock"
    yield
    # Drop the client bound to the dead socket; monkeypatch then puts the real one back.
    client = sessions_app.runtime.docker._client
    if client is not None:
        client.close()
    monkeypatch.setattr(sessions_app.runtime.docker, "_client", None)


def test_reconcile_fails_clearly_and_changes_nothing_when_the_engine_cannot_be_reached(
    alice, unreachable_engine
):
    session = session_row(alice, status=Session.Status.RUNNING)

    with pytest.raises(CommandError, match="container engine is not reachable"):
        run("reconcile_sessions")

    session.refresh_from_db()
    assert session.status == Session.Status.RUNNING


def test_cleanup_fails_clearly_when_the_engine_cannot_be_reached(unreachable_engine):
    with pytest.raises(CommandError, match="container engine is not reachable"):
        run("cleanup_sessions")


# --- build_sandbox_image -------------------------------------------------------------------


def test_build_sandbox_image_does_nothing_when_the_image_is_present(engine):
    engine.images.get(settings.VIBECODE_SANDBOX_IMAGE)  # the suite runs on the built image

    out = run("build_sandbox_image")

    assert out.splitlines()[-1] == f"image {settings.VIBECODE_SANDBOX_IMAGE} already present (use --rebuild)"


def test_build_sandbox_image_turns_an_unreachable_engine_into_a_command_error(monkeypatch, tmp_path):
    # A real client of an engine socket nobody listens on, in place of the process's shared one.
    socket_path = f"unix://{tmp_path}/nothing-listens-here.sock"
    nowhere = docker.DockerClient(base_url=socket_path, version="1.41", timeout=5)  # no version probe
    monkeypatch.setattr(docker_backend, "_client", nowhere)

    with pytest.raises(
        CommandError, match="could not build other:tag: The container engine is not reachable"
    ):
        run("build_sandbox_image", "--image", "other:tag")


@pytest.mark.parametrize("container_running", [True, False])
def test_reconcile_finishes_a_resume_cut_short_and_keeps_the_suspended_container(
    alice, engine, sandboxes, container_running
):
    # The backend died after claiming "resuming" (which counts toward max_running).
    session = services.session_create(user=alice)
    exec_sh(session, "echo kept > /workspace/file")
    session = services.session_suspend(session=session)
    if container_running:
        engine.api.start(session.container_id)
    Session.objects.filter(pk=session.pk).update(
        status=Session.Status.RESUMING, last_activity_at=timezone.now() - timedelta(hours=1)
    )

    run("reconcile_sessions")

    session.refresh_from_db()
    assert session.status == ("running" if container_running else "suspended")
    assert container_state(engine, session.container_name) == ("running" if container_running else "exited")
    if not container_running:
        session = services.session_resume(session=session)
    assert exec_sh(session, "cat /workspace/file") == b"kept\n"


def test_reconcile_leaves_a_session_being_resumed_right_now_alone(alice, engine, sandboxes):
    session = session_row(alice, status=Session.Status.RESUMING)

    assert run("reconcile_sessions").strip() == "nothing to do"

    session.refresh_from_db()
    assert session.status == Session.Status.RESUMING
