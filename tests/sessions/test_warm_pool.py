"""The warm pool (sessions_app/warm_pool.py) on the real engine, with the checkout's disk quotas:
claim, refill, members killed or removed behind our back, quota pressure, concurrent creates,
the memory rule, and a claimed workspace's volume surviving every cleanup and reconcile.

The suite runs with VIBECODE_WARM_POOL=0 (tests/pytest_env.py); these tests turn it on. They use
committed transactions: the refill runs in a thread of its own, on its own connection."""

from __future__ import annotations

import threading
from datetime import timedelta

import docker
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connections
from django.utils import timezone

from sessions_app import services, specs, warm_pool
from sessions_app.errors import QuotaExceeded
from sessions_app.models import Quota, Session, WarmSandbox
from sessions_app.operations import sessions_cleanup, sessions_reconcile
from sessions_app.runtime import btrfs, get_runtime
from sessions_app.runtime.docker import DockerRuntime
from sessions_app.selectors import sessions_active_count

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.docker]

ENGINE = docker.from_env()
MiB = 2**20


@pytest.fixture
def pool(settings, sandboxes):
    """A pool of two; afterwards no refill is left running to make sandboxes after the cleanup."""
    settings.VIBECODE_WARM_POOL = 2
    yield
    warm_pool.warm_pool_wait_refilled()
    settings.VIBECODE_WARM_POOL = 0


def _filled(size: int = 2) -> list[WarmSandbox]:
    warm_pool.warm_pool_refill()
    members = sorted(warm_pool.warm_pool_members(), key=lambda member: member.created_at)
    assert len(members) == size and all(m.state == WarmSandbox.State.READY for m in members)
    return members


def _sh(session: Session, script: str):
    return services.session_exec(session=session, argv=["sh", "-c", script], timeout=30, output_limit=1 << 20)


def _container_exists(name_or_id: str) -> bool:
    try:
        ENGINE.api.inspect_container(name_or_id)
    except docker.errors.NotFound:
        return False
    return True


def _volume_exists(name: str) -> bool:
    try:
        ENGINE.api.inspect_volume(name)
    except docker.errors.NotFound:
        return False
    return True


def _running_members() -> list[WarmSandbox]:
    return [
        member
        for member in warm_pool.warm_pool_members()
        if member.state == WarmSandbox.State.READY
        and ENGINE.api.inspect_container(member.container_id)["State"]["Running"]
    ]


def _pool_labels() -> list[str]:
    return [f"{key}={value}" for key, value in specs.pool_labels_filter().items()]


def _user(name: str):
    return get_user_model().objects.create_user(name, f"{name}@example.com", "pw-unused-here")


# --- pure: the spec key ----------------------------------------------------------------------------


def test_the_spec_key_ignores_names_and_limits_but_not_image_runtime_or_the_disk_quota():
    limits = {"memory_mb": 2048, "cpus": 1.5, "pids": 512, "disk_mb": 10240}
    key = specs.pool_key(image="img:1", runtime="runc", limits=limits)
    assert key == specs.pool_key(
        image="img:1", runtime="runc", limits={**limits, "memory_mb": 512, "pids": 64}
    )
    assert key == specs.pool_key(image="img:1", runtime="runc", limits={**limits, "disk_mb": 64})
    assert key != specs.pool_key(image="img:2", runtime="runc", limits=limits)
    assert key != specs.pool_key(image="img:1", runtime="runsc", limits=limits)
    assert key != specs.pool_key(image="img:1", runtime="runc", limits={**limits, "disk_mb": None})


# --- claim and refill -------------------------------------------------------------------------------


def test_a_create_claims_a_ready_member_binds_it_to_the_session_and_the_pool_refills(alice, pool):
    members = _filled()
    oldest = members[0]
    assert ENGINE.api.inspect_container(oldest.container_id)["Name"] == f"/{oldest.container_name}"

    session = services.session_create(user=alice, name="warm")

    assert session.status == Session.Status.RUNNING
    assert session.container_id == oldest.container_id
    # The container carries the seed's name; the volume cannot be renamed, and the row says so.
    assert session.container_name == f"vibecode-{alice.pk}-{session.public_id}"
    assert ENGINE.api.inspect_container(session.container_id)["Name"] == f"/{session.container_name}"
    assert session.volume_name == oldest.volume_name == f"vibecode-pool-{oldest.pool_id}-ws"
    claimed = WarmSandbox.objects.get(pk=oldest.pk)
    assert claimed.state == WarmSandbox.State.CLAIMED and claimed.session_id == session.pk
    assert session.events.get(action="create").detail["pool_member"] == oldest.pool_id
    # Ready for exec, with the quota-limited workspace volume and HOME on it.
    hello = _sh(session, 'echo hi > /workspace/f && cat /workspace/f && test -d "$HOME" && echo home')
    assert (hello.exit_code, hello.stdout) == (0, b"hi\nhome\n"), hello.stderr
    usage = btrfs.workspace_usage(ENGINE.api.inspect_volume(session.volume_name)["Options"]["device"])
    assert usage is not None and usage.limit_bytes == session.limits["disk_mb"] * MiB

    # The claim started a refill in the background: the pool is back to two, none of them hers.
    warm_pool.warm_pool_wait_refilled()
    refilled = _running_members()
    assert len(refilled) == 2 and oldest.pk not in {m.pk for m in refilled}

    # Deleting the session deletes its container and the (pool-named) volume, and the claim row.
    services.session_delete(session=session, force=True)
    assert not _container_exists(session.container_id)
    assert not _volume_exists(session.volume_name)
    assert not WarmSandbox.objects.filter(pk=oldest.pk).exists()


def test_a_claim_gives_the_sandbox_its_owners_limits(alice, pool):
    Quota.objects.create(user=alice, memory_mb=1024, cpus=0.5, pids=128, disk_mb=64)
    member = _filled()[0]

    session = services.session_create(user=alice)

    assert session.container_id == member.container_id, "the key ignores limits: the member is taken"
    host = ENGINE.api.inspect_container(session.container_id)["HostConfig"]
    assert (host["Memory"], host["MemorySwap"]) == (1024 * MiB, 1024 * MiB)
    assert (host["NanoCpus"], host["PidsLimit"]) == (500_000_000, 128)
    usage = btrfs.workspace_usage(ENGINE.api.inspect_volume(session.volume_name)["Options"]["device"])
    assert usage is not None and usage.limit_bytes == 64 * MiB
    full = _sh(session, "dd if=/dev/zero of=/workspace/big bs=1M count=100 2>&1; echo rc=$?")
    assert b"Disk quota exceeded" in full.stdout or b"No space" in full.stdout, full.stdout


# --- members that died behind our back ----------------------------------------------------------------


def test_a_killed_or_removed_member_is_never_handed_out_and_is_replaced(alice, bob, pool):
    killed, removed = _filled()
    ENGINE.api.kill(killed.container_id)
    ENGINE.api.remove_container(removed.container_id, force=True)

    # The oldest (killed) is claimed, found dead and given back: the create takes the cold path.
    session = services.session_create(user=alice)
    assert session.container_id not in {killed.container_id, removed.container_id}
    assert session.volume_name == f"vibecode-{alice.pk}-{session.public_id}-ws"
    labels = ENGINE.api.inspect_container(session.container_id)["Config"]["Labels"]
    assert labels["vibecode.session_id"] == session.public_id
    assert _sh(session, "echo ok").stdout == b"ok\n"
    assert not WarmSandbox.objects.filter(pk=killed.pk).exists(), "given back and removed"
    assert not _container_exists(killed.container_id) and not _volume_exists(killed.volume_name)

    # The refill that followed the claim made new members; the removed one is still a row until
    # reconcile sees its container gone. A create never gets it: reconcile runs first here.
    warm_pool.warm_pool_wait_refilled()
    report = sessions_reconcile()
    assert any(removed.container_name in action and "gone" in action for action in report.actions)
    assert not WarmSandbox.objects.filter(pk=removed.pk).exists()
    assert not _volume_exists(removed.volume_name)
    warm_pool.warm_pool_refill()
    assert len(_running_members()) == 2

    other = services.session_create(user=bob)
    assert other.volume_name.startswith("vibecode-pool-"), "a live member is claimed again"
    assert _sh(other, "echo ok").stdout == b"ok\n"


def test_reconcile_replaces_a_member_killed_behind_our_back(pool):
    killed, alive = _filled()
    ENGINE.api.kill(killed.container_id)

    report = sessions_reconcile()

    assert any(killed.container_name in action and "stopped" in action for action in report.actions)
    assert not _container_exists(killed.container_id) and not _volume_exists(killed.volume_name)
    assert [m.pk for m in warm_pool.warm_pool_members()] == [alive.pk]
    assert warm_pool.warm_pool_refill() == 1
    assert len(_running_members()) == 2
    assert sessions_reconcile().actions == [], "a second run has nothing to do"


def test_reconcile_removes_members_made_from_an_older_build_of_the_image(pool, settings):
    # A tag of this test's own (never the shared one), first on today's build...
    tag = f"vibecode-sandbox:pool-rebuild-{timezone.now().strftime('%H%M%S%f')}"
    repository, version = tag.split(":")
    ENGINE.api.tag(settings.VIBECODE_SANDBOX_IMAGE, repository, version)
    settings.VIBECODE_SANDBOX_IMAGE = tag
    rebuilt = None
    try:
        old = _filled()
        # ...then rebuilt under the same tag: same name, same spec key, another image id.
        rebuilt = ENGINE.api.commit(old[0].container_id, repository=repository, tag=version)["Id"]
        assert warm_pool.warm_pool_key(limits=old[0].limits) == old[0].spec_key

        report = sessions_reconcile()

        for member in old:
            assert any(member.container_name in a and "older build" in a for a in report.actions)
            assert not _container_exists(member.container_id)
        assert warm_pool.warm_pool_refill() == 2
        for member in _running_members():
            assert ENGINE.api.inspect_container(member.container_id)["Image"] == rebuilt
        assert sessions_reconcile().actions == [], "a second run has nothing to do"
    finally:
        for member in warm_pool.warm_pool_members():
            ENGINE.api.remove_container(member.container_id or member.container_name, force=True, v=True)
        WarmSandbox.objects.all().delete()
        ENGINE.api.remove_image(tag, force=True)


def test_a_claim_cut_short_before_its_rename_is_finished_by_reconcile(alice, pool, settings, monkeypatch):
    Quota.objects.create(user=alice, memory_mb=1024, cpus=0.5, pids=128)
    member = _filled()[0]

    def backend_killed(**kwargs):  # between the claim's commit and the rename
        raise SystemExit("backend killed")

    monkeypatch.setattr(warm_pool, "warm_pool_adopt", backend_killed)
    monkeypatch.setattr(warm_pool, "warm_pool_refill_soon", lambda: None)
    with pytest.raises(SystemExit):
        services.session_create(user=alice, name="cut short")
    monkeypatch.undo()
    session = Session.objects.get(owner=alice)
    assert session.status == Session.Status.CREATING
    assert ENGINE.api.inspect_container(member.container_id)["Name"] == f"/{member.container_name}"

    # Young claims are left alone: they are probably being finished right now.
    assert not any("finish the claim" in a for a in sessions_reconcile(dry_run=True).actions)
    long_ago = timezone.now() - timedelta(seconds=settings.VIBECODE_STUCK_CREATING_SECONDS + 60)
    WarmSandbox.objects.filter(pk=member.pk).update(claimed_at=long_ago)
    Session.objects.filter(pk=session.pk).update(created_at=long_ago)

    report = sessions_reconcile()

    assert any("finish the claim" in a and session.container_name in a for a in report.actions)
    session.refresh_from_db()
    assert session.status == Session.Status.RUNNING
    inspected = ENGINE.api.inspect_container(member.container_id)
    assert inspected["Name"] == f"/{session.container_name}"
    assert (inspected["HostConfig"]["Memory"], inspected["HostConfig"]["PidsLimit"]) == (1024 * MiB, 128)
    assert _sh(session, "echo ok").stdout == b"ok\n"
    assert sessions_reconcile().actions == [], "a second run has nothing to do"


# --- quotas ------------------------------------------------------------------------------------------


def test_a_user_at_a_quota_claims_nothing_and_members_never_count_against_one(alice, pool):
    Quota.objects.create(user=alice, max_running=1, max_sessions=2)
    members = _filled()

    first = services.session_create(user=alice)  # two ready members do not count as running
    assert first.container_id == members[0].container_id
    assert sessions_active_count(user_id=alice.pk) == 1
    warm_pool.warm_pool_wait_refilled()
    ready = {m.pk for m in _running_members()}
    assert len(ready) == 2

    with pytest.raises(QuotaExceeded) as running:
        services.session_create(user=alice)
    assert running.value.extra["limit"] == "max_running"
    assert {m.pk for m in _running_members()} == ready, "no member was taken or lost"

    services.session_suspend(session=first)
    second = services.session_create(user=alice)
    services.session_suspend(session=second)
    with pytest.raises(QuotaExceeded) as sessions:
        services.session_create(user=alice)
    assert sessions.value.extra["limit"] == "max_sessions"
    warm_pool.warm_pool_wait_refilled()
    assert len(_running_members()) == 2
    assert Session.objects.filter(owner=alice).count() == 2


def test_concurrent_creates_never_claim_the_same_member(pool):
    _filled()
    users = [_user(f"user{i}") for i in range(4)]
    results: dict[int, Session | BaseException] = {}
    go = threading.Barrier(len(users))

    def create(user) -> None:
        try:
            go.wait()
            results[user.pk] = services.session_create(user=user)
        except BaseException as exc:
            results[user.pk] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=create, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    warm_pool.warm_pool_wait_refilled()

    sessions = [results[user.pk] for user in users]
    assert all(isinstance(session, Session) for session in sessions), sessions
    assert len({s.container_id for s in sessions}) == 4  # type: ignore[union-attr]
    assert len({s.volume_name for s in sessions}) == 4  # type: ignore[union-attr]
    claimed = WarmSandbox.objects.filter(state=WarmSandbox.State.CLAIMED)
    assert 1 <= claimed.count() <= 4 and len({m.session_id for m in claimed}) == claimed.count()
    for member in claimed:
        assert member.session is not None and member.session.container_id == member.container_id
    for session in sessions:
        assert _sh(session, "echo ok").stdout == b"ok\n"  # type: ignore[arg-type]


# --- size: crashes and memory -----------------------------------------------------------------------


def test_the_pool_never_grows_past_its_size_after_crashes_or_concurrent_refills(pool, settings):
    # Three refills at once: one replica (one thread) refills at a time, one member at a time.
    threads = [
        threading.Thread(target=lambda: (warm_pool.warm_pool_refill(), connections.close_all()))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    members = warm_pool.warm_pool_members()
    assert len(members) <= 2
    warm_pool.warm_pool_refill()
    assert len(_running_members()) == 2

    # Leftovers of crashes: a member whose row was lost, and a row stuck warming with no container.
    runtime = get_runtime()
    lost = WarmSandbox(
        pool_id="lostmember2",
        container_name="vibecode-pool-lostmember2",
        volume_name="vibecode-pool-lostmember2-ws",
        image=members[0].image,
        runtime=members[0].runtime,
        limits=members[0].limits,
    )
    runtime.create(specs.warm_sandbox_spec(lost))
    stuck = WarmSandbox.objects.create(
        pool_id="stuckwarm22",
        container_name="vibecode-pool-stuckwarm22",
        volume_name="vibecode-pool-stuckwarm22-ws",
        image=members[0].image,
        runtime=members[0].runtime,
        limits=members[0].limits,
        spec_key=members[0].spec_key,
    )
    WarmSandbox.objects.filter(pk=stuck.pk).update(created_at=timezone.now() - timedelta(hours=1))
    settings.VIBECODE_WARM_POOL = 1

    report = sessions_reconcile()

    assert not _container_exists("vibecode-pool-lostmember2")
    assert not _volume_exists("vibecode-pool-lostmember2-ws"), "never claimed: its volume goes too"
    assert not WarmSandbox.objects.filter(pk=stuck.pk).exists()
    assert len(warm_pool.warm_pool_members()) == 1, report.actions
    assert warm_pool.warm_pool_refill() == 0
    assert len(ENGINE.api.containers(all=True, filters={"label": _pool_labels()})) == 1


def test_the_pool_shrinks_to_zero_when_the_engine_is_short_of_memory(alice, pool, settings):
    members = _filled()
    total_mb = DockerRuntime().engine_memory_bytes() // MiB  # type: ignore[operator]
    member_mb = settings.VIBECODE_SANDBOX_MEMORY_MB
    # Rule: MemTotal - active sessions' limits - members' limits >= the reserve.
    settings.VIBECODE_WARM_POOL_MEMORY_RESERVE_MB = total_mb - member_mb // 2
    assert warm_pool.warm_pool_target() == 0, "half a member's memory to spare: none"
    settings.VIBECODE_WARM_POOL_MEMORY_RESERVE_MB = total_mb - 3 * member_mb
    assert warm_pool.warm_pool_target() == 2, "room for three, the size is two"
    Session.objects.create(
        owner=alice,
        name="big",
        container_name="c-big",
        volume_name="v-big",
        image="x",
        status=Session.Status.RUNNING,
        limits={"memory_mb": 3 * member_mb},
    )
    assert warm_pool.warm_pool_target() == 0, "active sessions' limits count against the engine"

    # Cleanup (reconcile would mark the made-up session's missing container as an error first).
    report = sessions_cleanup()

    assert sum("beyond the pool's target of 0" in action for action in report.actions) == 2
    for member in members:
        assert not _container_exists(member.container_id) and not _volume_exists(member.volume_name)
    assert warm_pool.warm_pool_members() == [] and warm_pool.warm_pool_refill() == 0


# --- a claimed workspace is a user's: no pool code ever deletes its volume -----------------------------


def test_a_claimed_workspace_volume_survives_every_cleanup_and_reconcile(alice, pool, settings):
    _filled()
    session = services.session_create(user=alice)
    volume = session.volume_name
    assert volume.startswith("vibecode-pool-")
    assert _sh(session, "echo precious > /workspace/keep.txt").exit_code == 0

    def files_intact() -> None:
        assert _volume_exists(volume)
        current = Session.objects.get(pk=session.pk)
        if current.status != Session.Status.RUNNING:
            services.session_resume(session=current)
            current.refresh_from_db()
        assert _sh(current, "cat /workspace/keep.txt").stdout == b"precious\n"

    for _ in range(2):
        sessions_cleanup()
        sessions_reconcile()
    files_intact()

    # The pool turned off (shrinks to zero) or short of memory: members go, hers stays.
    settings.VIBECODE_WARM_POOL = 0
    sessions_reconcile()
    sessions_cleanup()
    files_intact()
    settings.VIBECODE_WARM_POOL = 2

    # Its pool row lost (a database restored from an older backup): still the session's.
    WarmSandbox.objects.filter(session=session).delete()
    sessions_reconcile()
    sessions_cleanup()
    files_intact()

    # Suspended, then its container removed behind our back: reconcile keeps the volume, and a
    # resume makes a new container on it.
    services.session_suspend(session=Session.objects.get(pk=session.pk))
    sessions_reconcile()
    ENGINE.api.remove_container(session.container_id, force=True)
    sessions_reconcile()
    sessions_cleanup()
    files_intact()

    # Even with the session row gone too, its container goes as any orphan's does; the volume
    # stays (a pool container renamed by a claim counts as a user's, its volume kept, likewise).
    running = Session.objects.get(pk=session.pk)
    Session.objects.filter(pk=running.pk).delete()
    report = sessions_reconcile()
    assert any("its volume is kept" in action for action in report.actions), report.actions
    assert _volume_exists(volume)
    assert not _container_exists(running.container_id)


def test_reconcile_dry_run_changes_nothing(pool):
    killed, _alive = _filled()
    ENGINE.api.kill(killed.container_id)
    report = sessions_reconcile(dry_run=True)
    assert any(killed.container_name in action for action in report.actions)
    assert WarmSandbox.objects.filter(pk=killed.pk, state=WarmSandbox.State.READY).exists()
    assert _container_exists(killed.container_id) and _volume_exists(killed.volume_name)


def test_with_the_pool_off_creates_take_the_cold_path_and_nothing_is_made(alice, sandboxes):
    session = services.session_create(user=alice)
    assert session.volume_name == f"{session.container_name}-ws"
    assert warm_pool.warm_pool_refill() == 0 and warm_pool.warm_pool_refill_soon() is None
    assert ENGINE.api.containers(all=True, filters={"label": _pool_labels()}) == []


# --- what staff see, and the API ----------------------------------------------------------------------


def test_the_api_answers_with_the_real_names_and_staff_see_members_and_claims(alice_api, staff, client, pool):
    members = _filled()
    created = alice_api.post("/api/vibecode/sessions", {"name": "api"}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["volume_name"] == members[0].volume_name and body["status"] == "running"
    warm_pool.warm_pool_wait_refilled()

    staff.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="sessions_app", codename__in=["view_warmsandbox", "view_session"]
        )
    )
    client.force_login(staff)
    listing = client.get("/admin/sessions_app/warmsandbox/")
    assert listing.status_code == 200
    page = listing.content.decode()
    assert members[0].container_name in page and "claimed" in page and members[1].container_name in page
    assert client.get("/admin/sessions_app/warmsandbox/add/").status_code == 403
    sessions = client.get("/admin/sessions_app/session/").content.decode()
    assert body["volume_name"] in sessions and body["container_name"] in sessions
