"""Writes about sessions. The API, the pages, the admin and the management commands all call
these; nothing else changes a session or touches its container.

Rules kept here:
* Docker is never called inside a database transaction: rows are claimed or checked in a short
  transaction, the runtime is called after it, and the result is recorded in another.
* State changes are conditional on ``state_version``, so two concurrent changes cannot both win.
* Only :func:`session_delete` deletes a workspace volume.
"""

from __future__ import annotations

import logging
import threading
import time
import unicodedata
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import connections, transaction
from django.db.models import F
from django.utils import timezone

from core_app.errors import DomainError
from core_app.metrics import SESSION_CREATE_SECONDS
from sandbox import builder
from sessions_app import engines, specs, warm_pool
from sessions_app.audit import session_event_record
from sessions_app.errors import (
    QuotaExceeded,
    SandboxNotFound,
    SandboxNotRunning,
    SessionBusy,
    SessionRunning,
    VolumeMissing,
)
from sessions_app.models import LOCAL_ENGINE, Session, SessionEvent, WarmSandbox, new_public_id
from sessions_app.runtime import get_runtime
from sessions_app.runtime.base import ExecResult, SandboxStats
from sessions_app.runtime.tunnel import Tunnel
from sessions_app.selectors import EffectiveQuota, quota_for, sessions_active_count
from sessions_app.signals import session_stopping

logger = logging.getLogger(__name__)

ACTIVITY_WRITE_INTERVAL = timedelta(seconds=30)
# After a background create claimed a pool member, its refill waits this long (see session_create).
BACKGROUND_REFILL_DELAY_SECONDS = 1.0
MAX_NAME_LENGTH = 100


class InvalidSessionName(DomainError):
    code = "invalid_name"


def clean_session_name(raw: str) -> str:
    """A session name: 1 to 100 printable characters. Refuses rather than silently mangles."""
    name = unicodedata.normalize("NFC", str(raw)).strip()
    if not name:
        raise InvalidSessionName("The name cannot be empty.")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidSessionName(f"The name is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}.")
    if any(unicodedata.category(char) in {"Cc", "Cf", "Zl", "Zp"} for char in name):
        raise InvalidSessionName("The name contains control characters.")
    return name


def _transition(session: Session, *, to: str, allowed_from: set[str], **fields: Any) -> Session:
    """Move ``session`` to ``to`` if nobody changed it since it was read; else ``SessionBusy``."""
    updated = Session.objects.filter(
        pk=session.pk, state_version=session.state_version, status__in=allowed_from
    ).update(status=to, state_version=F("state_version") + 1, **fields)
    if not updated:
        raise SessionBusy()
    session.refresh_from_db()
    return session


def _check_running_quota(*, user_id: int, excluding: int | None = None) -> None:
    """Raise ``QuotaExceeded`` unless the user may have one more session holding a sandbox.

    Call it with the user's row locked (``_lock_owner``) and claim the counted state in the same
    transaction: the check counts every claimed state (``Session.ACTIVE_STATUSES``), so two
    concurrent creates or resumes cannot both pass it.
    """
    quota = quota_for(user_id=user_id)
    if sessions_active_count(user_id=user_id, excluding=excluding) >= quota.max_running:
        raise QuotaExceeded(
            f"You already have {quota.max_running} running session(s), your limit (max_running). "
            "Suspend one first.",
            limit="max_running",
            value=quota.max_running,
        )


def _lock_owner(user_id: int) -> None:
    """Serialise one user's creates and resumes until the end of the current transaction."""
    get_user_model().objects.select_for_update().filter(pk=user_id).first()


def _limits_snapshot(quota: EffectiveQuota) -> dict[str, Any]:
    """The limits a new sandbox is made with; no disk quota where the runtime cannot apply one."""
    limits: dict[str, Any] = quota.limits()
    if not get_runtime().disk_quotas:
        limits["disk_mb"] = None
    return limits


def session_create(*, user: AbstractBaseUser, name: str | None = None, wait: bool = True) -> Session:
    """Create a session and its sandbox; returns it running and ready for exec.

    A warm pool member made for the same spec is claimed when there is one (sessions_app/
    warm_pool.py): its container is renamed to the session's and the session keeps the member's
    volume name; else (or if the member turns out dead) the sandbox is made here, the cold path.
    On failure the session is left in ``error`` with the reason, and no half-made container.
    The engine is chosen by :mod:`sessions_app.engines` (``NoCapacity`` when all are full).

    ``wait=False`` returns as soon as the session is claimed (``creating``): the sandbox is made in
    a background thread started once the claim is committed (:func:`session_background_wait`),
    and a failure there leaves the session in ``error`` with ``last_error``. Quota refusals are
    raised at once either way.
    """
    candidates = engines.engine_candidates()
    with transaction.atomic():
        session, member, seed_volume_name = _create_claim(user=user, name=name, candidates=candidates)
        if not wait:
            claimed = session.pk

            def finish() -> None:
                # A row of its own: the caller still reads ``session`` to answer.
                row = Session.objects.get(pk=claimed)
                volume = seed_volume_name
                try:
                    _create_finish(session=row, member=member, seed_volume_name=volume, refill=False)
                finally:
                    if member is not None:
                        # The refill's container create would compete with the page opening this
                        # workspace (and its terminal) for the CPU: it starts a moment later.
                        time.sleep(BACKGROUND_REFILL_DELAY_SECONDS)
                        warm_pool.warm_pool_refill_soon()

            transaction.on_commit(lambda: _in_background(f"session-create-{session.public_id}", finish))
    if not wait:
        return session
    return _create_finish(session=session, member=member, seed_volume_name=seed_volume_name)


def _create_claim(
    *, user: AbstractBaseUser, name: str | None, candidates: list[engines.Candidate]
) -> tuple[Session, WarmSandbox | None, str]:
    """Claim a new session row (``creating``) on an engine among ``candidates`` (from
    :func:`sessions_app.engines.engine_candidates`) and, when one fits, a pool member; no Docker
    call. Call it inside a transaction."""
    # Serialise one user's creates and resumes, so that two at once cannot both pass the quota.
    _lock_owner(user.pk)
    quota = quota_for(user_id=user.pk)
    existing = Session.objects.filter(owner_id=user.pk).exclude(status=Session.Status.DELETING)
    if existing.count() >= quota.max_sessions:
        raise QuotaExceeded(
            f"You already have {quota.max_sessions} session(s), your limit (max_sessions). Delete one first.",
            limit="max_sessions",
            value=quota.max_sessions,
        )
    _check_running_quota(user_id=user.pk)
    public_id = new_public_id()
    limits = _limits_snapshot(quota)
    seed_volume_name = specs.volume_name(user_id=user.pk, public_id=public_id)
    engine = engines.engine_claim(candidates, memory_mb=int(limits["memory_mb"]))
    # Only now, with the quota passed: a user at a limit never takes a member. The pool is made
    # on local only.
    member = warm_pool.warm_pool_take(limits=limits) if engine == LOCAL_ENGINE else None
    session = Session.objects.create(
        public_id=public_id,
        owner_id=user.pk,
        name=clean_session_name(name) if name else f"Workspace {existing.count() + 1}",
        status=Session.Status.CREATING,
        container_name=specs.container_name(user_id=user.pk, public_id=public_id),
        # A claimed member's volume cannot be renamed: the session records its real name.
        volume_name=member.volume_name if member else seed_volume_name,
        container_id=member.container_id if member else "",
        image=settings.VIBECODE_SANDBOX_IMAGE,
        runtime=settings.VIBECODE_SANDBOX_RUNTIME,
        limits=limits,
        engine=engine,
    )
    if member is not None:
        warm_pool.warm_pool_bind(member=member, session=session)
    session_event_record(
        session=session,
        action=SessionEvent.Action.CREATE,
        actor=user,
        name=session.name,
        **({"pool_member": member.pool_id} if member else {}),
    )
    return session, member, seed_volume_name


def _create_finish(
    *, session: Session, member: WarmSandbox | None, seed_volume_name: str, refill: bool = True
) -> Session:
    """The Docker half of a create: adopt the claimed member or make the sandbox, then record
    ``running`` (or ``error`` with the reason, raising). ``refill``: start the pool's refill
    after a claim (else the caller does)."""
    started = time.monotonic()
    ref = None
    if member is not None:
        try:
            ref = warm_pool.warm_pool_adopt(member=member, session=session)
        except Exception as exc:
            logger.warning(
                "session %s: pool member %s unusable (%s); making a sandbox instead",
                session.public_id,
                member.pool_id,
                getattr(exc, "detail", None) or exc,
            )
            session = warm_pool.warm_pool_give_back(
                member=member, session=session, seed_volume_name=seed_volume_name
            )
        if refill:
            warm_pool.warm_pool_refill_soon()
    if ref is None:
        try:
            ref = get_runtime().create(specs.sandbox_spec(session))
        except Exception as exc:
            _record_failure(session, exc)
            raise
    session = _transition(
        session,
        to=Session.Status.RUNNING,
        allowed_from={Session.Status.CREATING},
        container_id=ref.object_id,
        last_error="",
    )
    SESSION_CREATE_SECONDS.observe(time.monotonic() - started)
    logger.info(
        "session %s created, container %s%s",
        session.public_id,
        session.short_container_id,
        f" (pool member {member.pool_id})"
        if member is not None and ref.volume_name == member.volume_name
        else "",
    )
    return session


# --- Starts in the background (``wait=False``) ----------------------------------------------------

_background_lock = threading.Lock()
_background_threads: set[threading.Thread] = set()


def _in_background(name: str, work: Callable[[], object]) -> None:
    """Run ``work`` in a thread of its own (the Docker half of a create or resume that the caller
    does not wait for). Its failures are recorded on the session by ``work``; here they are only
    logged. The thread closes its database connections when it ends."""

    def run() -> None:
        try:
            work()
        except Exception as exc:
            logger.info("%s failed: %s", name, getattr(exc, "detail", None) or exc)
        finally:
            connections.close_all()  # this thread's connections only
            with _background_lock:
                _background_threads.discard(threading.current_thread())

    thread = threading.Thread(target=run, name=name, daemon=True)
    with _background_lock:
        _background_threads.add(thread)
    thread.start()


def session_background_wait(timeout: float = 120.0) -> None:
    """Wait for this process's background creates and resumes to end (tests, benchmarks)."""
    deadline = time.monotonic() + timeout
    while True:
        with _background_lock:
            threads = list(_background_threads)
        if not threads:
            return
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if time.monotonic() >= deadline:
            return


def _record_failure(session: Session, exc: Exception) -> None:
    reason = getattr(exc, "detail", None) or f"{type(exc).__name__}: {exc}"
    logger.warning("session %s failed: %s", session.public_id, reason)
    # Leave no half-made container behind; the volume stays (only a delete removes it).
    try:
        get_runtime().remove(specs.session_ref(session), volume=False)
    except DomainError:
        logger.warning("session %s: could not remove its container after the failure", session.public_id)
    Session.objects.filter(pk=session.pk).update(
        status=Session.Status.ERROR, last_error=str(reason)[:2000], state_version=F("state_version") + 1
    )
    session_event_record(session=session, action=SessionEvent.Action.ERROR, reason=str(reason)[:500])


def session_suspend(*, session: Session, actor: AbstractBaseUser | None = None) -> Session:
    """Stop the container, keep it and its volume. Suspending a suspended session is a no-op."""
    if session.status == Session.Status.SUSPENDED:
        return session
    if session.status not in {Session.Status.RUNNING, Session.Status.ERROR}:
        raise SessionBusy(f"The session is {session.status}; it can be suspended once that is over.")
    # Claim the change first (a concurrent resume or keep-working loses cleanly), then stop.
    previous = session.status
    session = _transition(
        session, to=Session.Status.SUSPENDED, allowed_from={Session.Status.RUNNING, Session.Status.ERROR}
    )
    # Terminals hear it first, so that they say "suspended" rather than see their shell vanish.
    _notify_terminals(session, "suspended")
    try:
        get_runtime().stop(specs.session_ref(session))
    except DomainError:
        Session.objects.filter(pk=session.pk).update(status=previous, state_version=F("state_version") + 1)
        raise
    session_event_record(session=session, action=SessionEvent.Action.SUSPEND, actor=actor)
    logger.info("session %s suspended, container %s", session.public_id, session.short_container_id)
    return session


def session_resume(*, session: Session, actor: AbstractBaseUser | None = None, wait: bool = True) -> Session:
    """Start a suspended (or failed) session again on its volume. Running already: no-op.

    The session is claimed as ``resuming`` (which counts toward ``max_running``) under the owner's
    lock before Docker is touched, so parallel resumes never exceed the quota; the losers get
    ``QuotaExceeded`` and stay as they were. If the container is gone but the volume is there, a
    new container is made on that volume. On a failure the session goes back to what it was.

    ``wait=False`` returns as soon as the claim is committed (``resuming``); the start runs in a
    background thread, and a failure there puts the session back as it was with ``last_error``.
    """
    if session.status == Session.Status.RUNNING:
        return session
    if session.status not in {Session.Status.SUSPENDED, Session.Status.ERROR}:
        raise SessionBusy(f"The session is {session.status}; it can be resumed once that is over.")
    previous = session.status
    with transaction.atomic():
        _lock_owner(session.owner_id)
        _check_running_quota(user_id=session.owner_id, excluding=session.pk)
        session = _transition(
            session,
            to=Session.Status.RESUMING,
            allowed_from={Session.Status.SUSPENDED, Session.Status.ERROR},
            last_activity_at=timezone.now(),  # also when the claim was made, for reconcile
        )
        if not wait:
            claimed = session.pk

            def finish() -> Session:
                row = Session.objects.get(pk=claimed)
                return _resume_finish(session=row, previous=previous, actor=actor, record_error=True)

            transaction.on_commit(lambda: _in_background(f"session-resume-{session.public_id}", finish))
    if not wait:
        return session
    return _resume_finish(session=session, previous=previous, actor=actor, record_error=False)


def _resume_finish(
    *, session: Session, previous: str, actor: AbstractBaseUser | None, record_error: bool
) -> Session:
    """The Docker half of a resume claimed as ``resuming``. On a failure the claim is given back
    (``previous``), with the reason in ``last_error`` when nobody waits to be told
    (``record_error``), and the error is raised."""
    runtime = get_runtime()
    ref = specs.session_ref(session)
    container_id = session.container_id
    try:
        try:
            runtime.start(ref)
        except SandboxNotFound:
            if not runtime.status(ref).volume_exists:
                Session.objects.filter(pk=session.pk).update(
                    status=Session.Status.ERROR,
                    last_error=VolumeMissing.default_detail,
                    state_version=F("state_version") + 1,
                )
                raise VolumeMissing() from None
            container_id = runtime.create(specs.sandbox_spec(session)).object_id
    except VolumeMissing:
        raise
    except Exception as exc:
        # Give the claim back: the session is as it was (its volume untouched), and retryable.
        fields: dict[str, Any] = {}
        if record_error:
            fields["last_error"] = str(getattr(exc, "detail", None) or f"{type(exc).__name__}: {exc}")[:2000]
        Session.objects.filter(pk=session.pk, status=Session.Status.RESUMING).update(
            status=previous, state_version=F("state_version") + 1, **fields
        )
        raise
    session = _transition(
        session,
        to=Session.Status.RUNNING,
        allowed_from={Session.Status.RESUMING},
        container_id=container_id,
        last_error="",
        last_activity_at=timezone.now(),
    )
    session_event_record(session=session, action=SessionEvent.Action.RESUME, actor=actor)
    logger.info("session %s resumed, container %s", session.public_id, session.short_container_id)
    return session


def session_delete(*, session: Session, actor: AbstractBaseUser | None = None, force: bool = False) -> None:
    """Delete the session: its container, its workspace volume (the files) and its row.

    A running session needs ``force=True``: deleting loses work, so it must be meant.
    """
    if session.status == Session.Status.RUNNING and not force:
        raise SessionRunning()
    previous = session.status
    session = _transition(
        session,
        to=Session.Status.DELETING,
        allowed_from=set(Session.Status.values) - {Session.Status.DELETING},
    )
    _notify_terminals(session, "deleted")
    try:
        get_runtime().remove(specs.session_ref(session), volume=True)
    except DomainError:
        Session.objects.filter(pk=session.pk).update(status=previous, state_version=F("state_version") + 1)
        raise
    session_event_record(
        session=None,
        action=SessionEvent.Action.DELETE,
        actor=actor,
        public_id=session.public_id,
        name=session.name,
        volume=session.volume_name,
    )
    session.delete()
    logger.info("session %s deleted with its volume", session.public_id)


def session_touch(*, session: Session) -> None:
    """Record activity, writing at most once per ``ACTIVITY_WRITE_INTERVAL``."""
    now = timezone.now()
    if session.last_activity_at and now - session.last_activity_at < ACTIVITY_WRITE_INTERVAL:
        return
    Session.objects.filter(pk=session.pk, last_activity_at__lt=now - ACTIVITY_WRITE_INTERVAL).update(
        last_activity_at=now
    )
    session.last_activity_at = now


def session_keepalive(*, session: Session) -> Session:
    """Extend an idle session now (the IDE's "keep working"): an unthrottled activity write."""
    now = timezone.now()
    Session.objects.filter(pk=session.pk).update(last_activity_at=now)
    session.last_activity_at = now
    return session


def _require_running(session: Session) -> None:
    if session.status != Session.Status.RUNNING:
        raise SandboxNotRunning(f"The session is {session.status}. Resume it first.")


def session_exec(
    *,
    session: Session,
    argv: list[str],
    timeout: float,
    output_limit: int,
    cwd: str = "/workspace",
    stdin: bytes | None = None,
) -> ExecResult:
    """Run ``argv`` in the session's sandbox through its helper, the one exec path (the same as
    the workspace API's): on timeout or end, every process of the run is killed."""
    _require_running(session)
    session_touch(session=session)
    helper = get_runtime().helper(specs.session_ref(session))
    raw = helper.exec(list(argv), timeout=timeout, output_limit=output_limit, cwd=cwd, stdin=stdin or b"")
    return ExecResult.from_helper(raw)


def session_tunnel(*, session: Session) -> Tunnel:
    """The running session's TCP tunnel (previews in, package egress out), started on demand."""
    _require_running(session)
    return get_runtime().tunnel(specs.session_ref(session), owner=session.public_id)


TUNNEL_READY_SECONDS = 5.0


def session_tunnel_ensure(*, session: Session, wait: bool = False) -> None:
    """Make sure the session's tunnel runs in this process, so that package egress works from
    the first ``pip install``: in the background, or (``wait``) until its egress port listens.
    Best effort: failures are logged, never raised; the next call tries again."""
    if session.status != Session.Status.RUNNING:
        return
    runtime, ref = get_runtime(), specs.session_ref(session)
    if runtime.tunnel_if_open(ref) is not None:
        return

    def start() -> None:
        try:
            runtime.tunnel(ref, owner=session.public_id).wait_ready(TUNNEL_READY_SECONDS)
        except Exception as exc:
            logger.info("session %s: no tunnel yet (%s)", session.public_id, exc)

    if wait:
        start()
    else:
        threading.Thread(target=start, name=f"tunnel-start-{session.public_id}", daemon=True).start()


def session_stats(*, session: Session) -> SandboxStats:
    _require_running(session)
    return get_runtime().stats(specs.session_ref(session))


def _notify_terminals(session: Session, status: str) -> None:
    """Tell whoever listens (the terminals, on any daphne process) that the session stops."""
    for receiver, result in session_stopping.send_robust(
        sender=Session, session_public_id=session.public_id, status=status
    ):
        if isinstance(result, Exception):
            logger.warning("session %s: %r failed: %r", session.public_id, receiver, result)


# --- The sandbox image ---------------------------------------------------------------------------


def sandbox_image_build(
    *,
    image: str,
    rebuild: bool,
    progress: Callable[[str], None],
    base_image: str = builder.DEFAULT_BASE_IMAGE,
    mirror: str = builder.DEFAULT_MIRROR,
) -> bool:
    """Make sure the sandbox image exists on the runtime's engine, building it offline when
    missing (or always, with ``rebuild``). True when it built. Raises ``SandboxBuildError``."""
    return builder.build_sandbox_image(
        image=image,
        base_image=base_image,
        mirror=mirror,
        rebuild=rebuild,
        progress=progress,
        runtime=get_runtime(),
    )
