"""The warm pool: ``VIBECODE_WARM_POOL`` sandboxes made and started ahead of demand, for the
default image and limits, so that a create takes one (a rename, in milliseconds) instead of
making a container (a create, a start and a first exec).

Names. A member is made as ``vibecode-pool-<pool_id>`` on the volume ``vibecode-pool-<pool_id>-ws``
with the labels ``app=vibecode``, ``vibecode.instance``, ``vibecode.pool=1`` and the names it was
made under. A claim renames the running container to the seed's name, ``vibecode-<user>-<session>``
(Docker renames running containers), but a volume cannot be renamed and a container's mounts
cannot change: the claimed workspace keeps its pool volume for life. The session row records that
real name (``Session.volume_name``), as it records every name the runtime returns; the admin, the
API, backups, restores, cleanup and reconcile all read the name from the row, never from the
template. Labels cannot change either, so a claimed container carries no user or session id:
ownership is the database's (``Session.owner``, ``WarmSandbox.session``), as it always was.

Claim. Inside the create's short transaction, after the quota checks under the owner's lock (so a
user at ``max_running`` or ``max_sessions`` never gets a member), the oldest ``ready`` member with
the same spec key is taken with ``SELECT ... FOR UPDATE SKIP LOCKED`` and marked ``claimed`` in the
transaction that creates the session row: two creates never get the same member, and the volume
is always named by one row or the other. After the commit the runtime renames the container, sets
the owner's limits where they differ from the defaults, and checks it still runs. A member found
dead (killed or removed behind our back) is given back: the session is pointed at the seed's
volume name in the same transaction that marks the member ``removing``, the member is removed
with its (never used) volume, and the create takes the cold path. Members are never counted
against anyone's quota: they are not sessions.

Refill. After every claim a background thread, and every maintenance round, refill the pool one
member at a time until it holds its target, with a lock in the shared cache (with an expiry) so
that one replica refills at a time. Each member's row is created (``warming``) before its
container, so a crash leaves a row that reconcile finds.

Size. The target is ``VIBECODE_WARM_POOL``, shrunk so that the engine keeps
``VIBECODE_WARM_POOL_MEMORY_RESERVE_MB`` uncommitted: engine MemTotal (``docker info``) minus
the memory limits of this installation's active sessions minus the members' limits must stay at
or above the reserve. An engine short of memory gets a pool of zero.

Reconcile (called by ``sessions_reconcile`` and ``sessions_cleanup``). Pool containers with no
row whose volume no session names are removed: with their volume only when they are provably
never claimed (still under their pool name), else the volume is kept as any orphan's is; rows whose
container is gone or stopped, rows made for another spec, rows stuck warming, and members beyond
the target are removed. Only a ``removing`` row's volume is ever deleted, and a row gets there
only from ``warming``/``ready`` or from a claim given back before its session saw it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.cache import cache
from django.db import connections, transaction
from django.utils import timezone

from sessions_app import specs
from sessions_app.models import Session, WarmSandbox, new_public_id
from sessions_app.runtime import get_runtime
from sessions_app.runtime.base import SandboxRef, SandboxRuntime

if TYPE_CHECKING:
    from sessions_app.operations import OperationReport

logger = logging.getLogger(__name__)

REFILL_LOCK_KEY = "warm-pool-refill-lock"
# Longer than making one member can take (a create waits at most DOCKER_TIMEOUT_SECONDS per call);
# a crashed holder blocks the refill this long at most.
REFILL_LOCK_SECONDS = 300

_thread_lock = threading.Lock()
_refill_thread: threading.Thread | None = None


# --- reads ---------------------------------------------------------------------------------------


def warm_pool_key(*, limits: dict[str, Any]) -> str:
    """The spec key of a new session's sandbox with these limits (see ``specs.pool_key``)."""
    return specs.pool_key(
        image=settings.VIBECODE_SANDBOX_IMAGE, runtime=settings.VIBECODE_SANDBOX_RUNTIME, limits=limits
    )


def warm_pool_target(*, runtime: SandboxRuntime | None = None) -> int:
    """How many members the pool should hold now: ``VIBECODE_WARM_POOL``, fewer when the engine's
    memory minus the active sessions' limits minus the members' would fall below the reserve."""
    size = settings.VIBECODE_WARM_POOL
    if size <= 0:
        return 0
    total = (runtime or get_runtime()).engine_memory_bytes()
    if total is None:
        return size
    committed = sum(
        int((limits or {}).get("memory_mb") or 0)
        for limits in Session.objects.filter(status__in=Session.ACTIVE_STATUSES).values_list(
            "limits", flat=True
        )
    )
    spare_mb = total // 2**20 - committed - settings.VIBECODE_WARM_POOL_MEMORY_RESERVE_MB
    return max(0, min(size, spare_mb // settings.VIBECODE_SANDBOX_MEMORY_MB))


def warm_pool_members() -> list[WarmSandbox]:
    """The members that count toward the pool's size (warming or ready)."""
    return list(WarmSandbox.objects.filter(state__in=WarmSandbox.POOL_STATES))


# --- claims (called by services.session_create) ---------------------------------------------------


def warm_pool_take(*, limits: dict[str, Any]) -> WarmSandbox | None:
    """Inside the create's transaction: claim the oldest ready member made for the same spec, or
    None. Members another create has locked are skipped, never waited for; the claim itself is
    conditional too (``ready`` -> ``claimed``), so a database without row locks (SQLite) cannot
    hand one member out twice either."""
    if settings.VIBECODE_WARM_POOL <= 0:
        return None
    member = (
        WarmSandbox.objects.select_for_update(skip_locked=True)
        .filter(state=WarmSandbox.State.READY, spec_key=warm_pool_key(limits=limits))
        .order_by("created_at")
        .first()
    )
    if member is None:
        return None
    now = timezone.now()
    claimed = WarmSandbox.objects.filter(pk=member.pk, state=WarmSandbox.State.READY).update(
        state=WarmSandbox.State.CLAIMED, claimed_at=now
    )
    if not claimed:
        return None
    member.state, member.claimed_at = WarmSandbox.State.CLAIMED, now
    return member


def warm_pool_bind(*, member: WarmSandbox, session: Session) -> None:
    """In the same transaction, once the session row exists: the member is the session's."""
    member.session = session
    member.save(update_fields=["session"])


def warm_pool_adopt(*, member: WarmSandbox, session: Session) -> SandboxRef:
    """After the commit: rename the member to the session's container name and give it the
    session's limits where they differ from what it was made with. Raises what the runtime
    raises (``SandboxNotFound``, ``SandboxNotRunning``...): the caller gives the member back."""
    changed = {
        name: value
        for name, value in session.limits.items()
        if name in {"memory_mb", "cpus", "pids", "disk_mb"} and value != member.limits.get(name)
    }
    return get_runtime().adopt(
        SandboxRef(member.container_id, member.container_name, member.volume_name),
        name=session.container_name,
        memory_mb=changed.get("memory_mb"),
        cpus=changed.get("cpus"),
        pids=changed.get("pids"),
        disk_mb=changed.get("disk_mb"),
    )


def warm_pool_give_back(*, member: WarmSandbox, session: Session, seed_volume_name: str) -> Session:
    """A claimed member turned out unusable before its session ever ran: point the session at
    the seed's volume name (for the cold path) and mark the member ``removing`` in one
    transaction, then remove it with its volume (it never held a user's file). Best effort: a
    removal that fails is finished by reconcile."""
    with transaction.atomic():
        Session.objects.filter(pk=session.pk, status=Session.Status.CREATING).update(
            volume_name=seed_volume_name, container_id=""
        )
        WarmSandbox.objects.filter(pk=member.pk, state=WarmSandbox.State.CLAIMED).update(
            state=WarmSandbox.State.REMOVING, session=None
        )
    session.refresh_from_db()
    member.refresh_from_db()
    try:
        _finish_removal(get_runtime(), member)
    except Exception as exc:
        logger.warning("pool member %s: could not remove it (%s); reconcile will", member.pool_id, exc)
    return session


# --- refill --------------------------------------------------------------------------------------


def warm_pool_refill() -> int:
    """Make members, one at a time, until the pool holds its target; returns how many were made.
    One replica at a time (a lock in the shared cache); another holding it: 0 at once. A member
    that fails to be made ends the round (logged; the next one tries again)."""
    if settings.VIBECODE_WARM_POOL <= 0:
        return 0
    owner = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
    try:
        if not cache.add(REFILL_LOCK_KEY, owner, timeout=REFILL_LOCK_SECONDS):
            return 0
    except Exception:
        logger.warning("warm pool not refilled: the cache (lock) is unavailable", exc_info=True)
        return 0
    made = 0
    try:
        runtime = get_runtime()
        while len(warm_pool_members()) < warm_pool_target(runtime=runtime):
            _make_member(runtime)
            made += 1
    finally:
        try:
            if cache.get(REFILL_LOCK_KEY) == owner:
                cache.delete(REFILL_LOCK_KEY)
        except Exception:
            logger.warning("warm pool: could not release the refill lock", exc_info=True)
    return made


def _make_member(runtime: SandboxRuntime) -> WarmSandbox:
    limits = specs.default_limits(disk_quotas=runtime.disk_quotas)
    pool_id = new_public_id()
    # The row first: a refill killed mid-create leaves a row that reconcile finds and removes.
    member = WarmSandbox.objects.create(
        pool_id=pool_id,
        state=WarmSandbox.State.WARMING,
        container_name=specs.pool_container_name(pool_id=pool_id),
        volume_name=specs.pool_volume_name(pool_id=pool_id),
        image=settings.VIBECODE_SANDBOX_IMAGE,
        runtime=settings.VIBECODE_SANDBOX_RUNTIME,
        limits=limits,
        spec_key=warm_pool_key(limits=limits),
    )
    try:
        ref = runtime.create(specs.warm_sandbox_spec(member))
    except Exception:
        _remove_members(runtime, [member], reason="it could not be made")
        raise
    ready = WarmSandbox.objects.filter(pk=member.pk, state=WarmSandbox.State.WARMING).update(
        state=WarmSandbox.State.READY, container_id=ref.object_id, ready_at=timezone.now()
    )
    member.container_id = ref.object_id
    if not ready:
        # Reconcile took it meanwhile (to remove it): what was made here goes too.
        member.refresh_from_db()
        _finish_removal(runtime, member)
        return member
    logger.info("pool member %s ready, container %s", member.pool_id, ref.object_id[:12])
    return member


def warm_pool_refill_soon() -> threading.Thread | None:
    """Refill in a background thread of this process (after a claim); None when the pool is
    off. One thread at a time per process; the cache lock keeps replicas apart."""
    global _refill_thread
    if settings.VIBECODE_WARM_POOL <= 0:
        return None
    with _thread_lock:
        if _refill_thread is not None and _refill_thread.is_alive():
            return _refill_thread
        _refill_thread = threading.Thread(target=_refill_in_background, name="warm-pool-refill", daemon=True)
        _refill_thread.start()
        return _refill_thread


def warm_pool_wait_refilled(timeout: float = 60.0) -> None:
    """Wait for this process's background refill, if any, to end (tests, benchmarks)."""
    thread = _refill_thread
    if thread is not None:
        thread.join(timeout)


def _refill_in_background() -> None:
    try:
        warm_pool_refill()
    except Exception:
        logger.warning("warm pool refill failed; the next maintenance round tries again", exc_info=True)
    finally:
        connections.close_all()  # this thread's connections only


# --- removal and reconcile ------------------------------------------------------------------------


def _member_ref(member: WarmSandbox) -> SandboxRef:
    return SandboxRef(member.container_id or member.container_name, member.container_name, member.volume_name)


def _finish_removal(runtime: SandboxRuntime, member: WarmSandbox) -> None:
    """Remove a ``removing`` member's container and volume, then its row. Only such a row's
    volume is ever deleted by the pool (see the module's docstring)."""
    if member.state != WarmSandbox.State.REMOVING:
        raise ValueError(f"pool member {member.pool_id} is {member.state}, not removing")
    runtime.remove(_member_ref(member), volume=True)
    WarmSandbox.objects.filter(pk=member.pk, state=WarmSandbox.State.REMOVING).delete()


def _remove_members(
    runtime: SandboxRuntime,
    members: Iterable[WarmSandbox],
    *,
    reason: str,
    report: OperationReport | None = None,
) -> None:
    """Claim each member for removal (only from warming or ready: never a claimed one), then
    remove it. A member claimed meanwhile by a create is left alone."""
    for member in members:
        message = f"remove pool member {member.container_name}: {reason}"
        if report is not None:
            report.add(message, kind="pool_removed")
            if report.dry_run:
                continue
        else:
            logger.info("%s", message)
        taken = WarmSandbox.objects.filter(pk=member.pk, state__in=WarmSandbox.POOL_STATES).update(
            state=WarmSandbox.State.REMOVING
        )
        if taken:
            member.state = WarmSandbox.State.REMOVING
            _finish_removal(runtime, member)


def warm_pool_finish_claims(report: OperationReport) -> None:
    """Claims cut short: a member claimed (its row says so, its session exists) whose container
    still carries its pool name, because the backend died between the claim's commit and the
    rename. The rename and the owner's limits are applied now, so the session's sandbox runs
    under the seed's name with its owner's limits, not the pool's defaults. Claims younger than
    ``VIBECODE_STUCK_CREATING_SECONDS`` are probably being finished right now and are left alone.
    Called by ``sessions_reconcile`` before it looks at the sessions."""
    runtime = get_runtime()
    recent = timezone.now() - timedelta(seconds=settings.VIBECODE_STUCK_CREATING_SECONDS)
    claims = list(
        WarmSandbox.objects.filter(
            state=WarmSandbox.State.CLAIMED, session__isnull=False, claimed_at__lt=recent
        ).select_related("session")
    )
    if not claims:
        return
    on_engine = runtime.list_sandboxes(specs.pool_labels_filter())
    by_pool_id = {info.labels.get("vibecode.pool_id", ""): info for info in on_engine}
    for member in claims:
        session = member.session
        found = by_pool_id.get(member.pool_id)
        if session is None or found is None or found.object_name != member.container_name:
            continue  # gone (reconciled as its session), or renamed already: the claim finished
        if session.status == Session.Status.DELETING:
            continue
        report.add(
            f"finish the claim of pool member {member.container_name}: "
            f"now {session.container_name}, with session {session.public_id}'s limits",
            kind="pool_claim_finished",
        )
        if report.dry_run:
            continue
        try:
            warm_pool_adopt(member=member, session=session)
        except Exception as exc:
            # Stopped or gone: the session's own reconcile (suspended or error) follows.
            why = getattr(exc, "detail", None) or exc
            report.add(f"pool member {member.container_name}: {why}", kind="failed")


def warm_pool_reconcile(report: OperationReport) -> None:
    """Bring the pool and the engine into agreement (see the module's docstring). Safe to run
    twice; ``report.dry_run`` changes nothing."""
    runtime = get_runtime()
    # Read the engine first, then the pool's rows, then the sessions': a claim turns a member's
    # row into a session's reference in one transaction, so every member listed here is named
    # by a row read afterwards, whenever the claim committed.
    on_engine = runtime.list_sandboxes(specs.pool_labels_filter())
    rows = {member.pool_id: member for member in WarmSandbox.objects.all()}
    session_volumes = set(Session.objects.values_list("volume_name", flat=True))

    for info in on_engine:
        pool_id = info.labels.get("vibecode.pool_id", "")
        if pool_id in rows:
            continue
        volume = info.labels.get("vibecode.volume", "")
        if volume in session_volumes:
            continue  # a session's (whatever became of its pool row): reconciled as that session
        never_claimed = (
            bool(volume)
            and info.object_name == info.labels.get("vibecode.pool_name")
            and volume not in session_volumes
        )
        if never_claimed:
            report.add(
                f"remove pool member {info.object_name} with no row, and its volume", kind="pool_removed"
            )
        else:
            report.add(
                f"remove container {info.object_name} (pool-made, no row); its volume is kept",
                kind="orphan_removed",
            )
        if not report.dry_run:
            ref = SandboxRef(info.object_id, info.object_name, volume if never_claimed else "")
            runtime.remove(ref, volume=never_claimed)

    now = timezone.now()
    stuck_after = timedelta(seconds=settings.VIBECODE_STUCK_CREATING_SECONDS)
    by_pool_id = {info.labels.get("vibecode.pool_id", ""): info for info in on_engine}
    key = warm_pool_key(limits=specs.default_limits(disk_quotas=runtime.disk_quotas))
    # The image's tag names a build; a rebuild under the same tag leaves members of the old one.
    current_image = runtime.image_id(settings.VIBECODE_SANDBOX_IMAGE) or ""
    keep: list[WarmSandbox] = []
    for member in rows.values():
        if member.state == WarmSandbox.State.CLAIMED:
            continue  # a session's now: reconciled as the session
        if member.state == WarmSandbox.State.REMOVING:
            report.add(f"finish removing pool member {member.container_name}", kind="pool_removed")
            if not report.dry_run:
                _finish_removal(runtime, member)
            continue
        found = by_pool_id.get(member.pool_id)
        reason = ""
        if member.state == WarmSandbox.State.WARMING:
            if now - member.created_at < stuck_after:
                keep.append(member)  # probably being made right now
                continue
            reason = "stuck warming"
        elif found is None:
            reason = "its container is gone"
        elif not found.running:
            reason = "its container stopped"
        elif member.spec_key != key:
            reason = "made for another image or spec"
        elif current_image and found.image_id and found.image_id != current_image:
            reason = "made from an older build of the image"
        if reason:
            _remove_members(runtime, [member], reason=reason, report=report)
        else:
            keep.append(member)

    target = warm_pool_target(runtime=runtime)
    if len(keep) > target:
        # The newest go: a claim takes the oldest, which have waited longest to be useful.
        extras = sorted(keep, key=lambda member: member.created_at)[target:]
        _remove_members(
            runtime, reversed(extras), reason=f"beyond the pool's target of {target}", report=report
        )
