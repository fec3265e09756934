"""Operations on every session at once: idle cleanup and reconciliation with the engine.

The management commands (``cleanup_sessions``, ``reconcile_sessions``), the in-server maintenance
thread and ``restore_all`` call these. Both are safe to run twice, and ``dry_run`` changes nothing.
Like every service, they never call the runtime inside a database transaction.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from core_app.errors import DomainError
from sessions_app import specs, warm_pool
from sessions_app.audit import session_event_record
from sessions_app.errors import SessionBusy, VolumeMissing
from sessions_app.models import Session, SessionEvent
from sessions_app.runtime import get_runtime
from sessions_app.runtime.base import SandboxRef, SandboxState
from sessions_app.selectors import sessions_idle
from sessions_app.services import _transition, session_suspend

logger = logging.getLogger(__name__)


@dataclass
class OperationReport:
    """What a cleanup or reconciliation did (or, in a dry run, would do)."""

    dry_run: bool
    actions: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)

    def add(self, message: str, *, kind: str = "other") -> None:
        self.actions.append(message)
        self.counts[kind] += 1
        logger.info("%s%s", "[dry run] " if self.dry_run else "", message)


def sessions_cleanup(*, idle_minutes: int | None = None, dry_run: bool = False) -> OperationReport:
    """Suspend sessions idle past their timeout, and remove this installation's containers that
    have no session row (their volumes stay for staff to inspect). Never deletes a workspace
    volume: the only volumes it removes are never-claimed warm pool members' (see
    :func:`sessions_app.warm_pool.warm_pool_reconcile`)."""
    report = OperationReport(dry_run=dry_run)
    for listed in sessions_idle(idle_minutes=idle_minutes):
        # Read again just before acting: a "keep working" since the list was made wins.
        session = Session.objects.filter(
            pk=listed.pk, status=Session.Status.RUNNING, last_activity_at=listed.last_activity_at
        ).first()
        if session is None:
            continue
        idle_since = f"{session.last_activity_at:%Y-%m-%d %H:%M}"
        if dry_run:
            report.add(
                f"suspend idle session {session.public_id} (last activity {idle_since})", kind="suspended"
            )
            continue
        try:
            session_suspend(session=session)
        except DomainError as exc:
            report.add(f"could not suspend {session.public_id}: {exc.detail}", kind="failed")
            continue
        report.add(f"suspend idle session {session.public_id} (last activity {idle_since})", kind="suspended")
        session_event_record(session=session, action=SessionEvent.Action.CLEANUP, reason="idle")
    _remove_orphans(report)
    warm_pool.warm_pool_reconcile(report)
    return report


def _remove_orphans(report: OperationReport) -> None:
    runtime = get_runtime()
    known = set(Session.objects.values_list("container_name", flat=True))
    for info in runtime.list_sandboxes(specs.instance_labels()):
        # Only a session's sandbox can be an orphan; backup and restore helpers carry no session id.
        if info.object_name in known or "vibecode.session_id" not in info.labels:
            continue
        report.add(
            f"remove orphan container {info.object_name} ({info.object_id[:12]}); its volume is kept",
            kind="orphan_removed",
        )
        if not report.dry_run:
            runtime.remove(SandboxRef(info.object_id, info.object_name, volume_name=""), volume=False)


def sessions_reconcile(*, dry_run: bool = False) -> OperationReport:
    """Bring the database and the engine back into agreement after crashes and restarts.

    * running row, container stopped or gone: suspended (volume there) or error (volume gone);
    * suspended row, container running: the container is stopped;
    * creating or resuming row older than VIBECODE_STUCK_CREATING_SECONDS: running if its
      container runs, else as above;
    * deleting row: the delete that was asked for is finished;
    * a container with no row: removed, its volume kept;
    * the warm pool: claims cut short finished (``warm_pool.warm_pool_finish_claims``); dead,
      stale and extra members removed (``warm_pool.warm_pool_reconcile``).
    Safe to run twice: the second run finds nothing to do.
    """
    report = OperationReport(dry_run=dry_run)
    runtime = get_runtime()
    # First the claims of pool members cut short before their rename: their sessions are then
    # found under their own names below.
    warm_pool.warm_pool_finish_claims(report)
    now = timezone.now()
    for session in Session.objects.order_by("pk"):
        stuck_after = timedelta(seconds=settings.VIBECODE_STUCK_CREATING_SECONDS)
        if session.status == Session.Status.CREATING and now - session.created_at < stuck_after:
            continue  # probably being created right now
        if session.status == Session.Status.RESUMING and now - session.last_activity_at < stuck_after:
            continue  # probably being resumed right now (the claim set last_activity_at)
        ref = specs.session_ref(session)
        status = runtime.status(ref)
        target: str | None = None
        if session.status == Session.Status.DELETING:
            report.add(f"finish deleting session {session.public_id}")
            if not dry_run:
                runtime.remove(ref, volume=True)
                session.delete()
            continue
        if session.status == Session.Status.ERROR:
            # A failed session keeps its volume for the user; a container left running is stopped.
            if status.state == SandboxState.RUNNING:
                report.add(f"stop container of failed session {session.public_id}")
                if not dry_run:
                    runtime.stop(ref)
            continue
        if status.state == SandboxState.RUNNING:
            if session.status == Session.Status.SUSPENDED:
                report.add(f"stop container of suspended session {session.public_id}")
                if not dry_run:
                    runtime.stop(ref)
            elif session.status in {Session.Status.CREATING, Session.Status.RESUMING}:
                target = Session.Status.RUNNING
        elif session.status in {Session.Status.RUNNING, Session.Status.CREATING, Session.Status.RESUMING}:
            # A resume cut short keeps its stopped container: it is the suspended session's.
            if status.state == SandboxState.STOPPED and session.status == Session.Status.CREATING:
                if not dry_run:
                    runtime.remove(ref, volume=False)
            target = Session.Status.SUSPENDED if status.volume_exists else Session.Status.ERROR
        elif session.status == Session.Status.SUSPENDED and not status.volume_exists:
            target = Session.Status.ERROR
        if target is None:
            continue
        report.add(
            f"session {session.public_id}: {session.status} -> {target} (container {status.state.value})"
        )
        if dry_run:
            continue
        fields: dict[str, Any] = {}
        if target == Session.Status.ERROR:
            fields["last_error"] = VolumeMissing.default_detail
        if status.state == SandboxState.MISSING:
            fields["container_id"] = ""
        elif target == Session.Status.RUNNING:
            fields["container_id"] = status.object_id
        try:
            _transition(session, to=target, allowed_from={session.status}, **fields)
        except SessionBusy:
            report.add(f"session {session.public_id} changed meanwhile; left as it is")
            continue
        session_event_record(session=session, action=SessionEvent.Action.RECONCILE, to=target)
    _remove_orphans(report)
    warm_pool.warm_pool_reconcile(report)
    return report
