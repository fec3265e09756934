"""Reads about sessions and quotas. Ownership is enforced here: another user's session is
simply not found (the API answers 404, never 403)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Count, QuerySet
from django.utils import timezone

from sessions_app.errors import SessionNotFound
from sessions_app.models import SLUG_ALPHABET, Engine, Quota, Session
from sessions_app.runtime.errors import EngineUnavailable


@dataclass(frozen=True)
class EffectiveQuota:
    max_sessions: int
    max_running: int
    memory_mb: int
    cpus: float
    pids: int
    idle_timeout_minutes: int
    disk_mb: int

    def limits(self) -> dict[str, float | int]:
        return {"memory_mb": self.memory_mb, "cpus": self.cpus, "pids": self.pids, "disk_mb": self.disk_mb}


def quota_for(*, user_id: int) -> EffectiveQuota:
    quota = Quota.objects.filter(user_id=user_id).first()

    def pick(field: str, default: float | int) -> float | int:
        value = getattr(quota, field, None) if quota else None
        return default if value is None else value

    return EffectiveQuota(
        max_sessions=int(pick("max_sessions", settings.VIBECODE_MAX_SESSIONS)),
        max_running=int(pick("max_running", settings.VIBECODE_MAX_RUNNING)),
        memory_mb=int(pick("memory_mb", settings.VIBECODE_SANDBOX_MEMORY_MB)),
        cpus=float(pick("cpus", settings.VIBECODE_SANDBOX_CPUS)),
        pids=int(pick("pids", settings.VIBECODE_SANDBOX_PIDS)),
        idle_timeout_minutes=int(pick("idle_timeout_minutes", settings.VIBECODE_IDLE_TIMEOUT_MINUTES)),
        disk_mb=int(pick("disk_mb", settings.VIBECODE_SANDBOX_DISK_MB)),
    )


def sessions_active_count(*, user_id: int, excluding: int | None = None) -> int:
    """The user's sessions that count toward ``max_running``: running, or claimed to be (creating,
    resuming). Exact only while the caller holds the owner's lock (see services)."""
    active = Session.objects.filter(owner_id=user_id, status__in=Session.ACTIVE_STATUSES)
    if excluding is not None:
        active = active.exclude(pk=excluding)
    return active.count()


def session_list(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[Session]:
    return Session.objects.filter(owner_id=user.pk).exclude(status=Session.Status.DELETING)


def session_get(*, user: AbstractBaseUser | AnonymousUser, public_id: str) -> Session:
    """The user's own session, or ``SessionNotFound`` (also for someone else's)."""
    public_id = str(public_id)
    if not (0 < len(public_id) <= 16 and all(char in SLUG_ALPHABET for char in public_id)):
        raise SessionNotFound()
    session = Session.objects.filter(owner_id=user.pk, public_id=public_id).first()
    if session is None or session.status == Session.Status.DELETING:
        raise SessionNotFound()
    return session


def session_idle_deadline(session: Session) -> timezone.datetime:
    minutes = quota_for(user_id=session.owner_id).idle_timeout_minutes
    return session.last_activity_at + timedelta(minutes=minutes)


def sessions_idle(*, now: timezone.datetime | None = None, idle_minutes: int | None = None) -> list[Session]:
    """Running sessions idle past their timeout (their owner's quota, or ``idle_minutes``)."""
    now = now or timezone.now()
    idle = []
    for session in Session.objects.filter(status=Session.Status.RUNNING).select_related("owner"):
        minutes = (
            idle_minutes
            if idle_minutes is not None
            else quota_for(user_id=session.owner_id).idle_timeout_minutes
        )
        if session.last_activity_at <= now - timedelta(minutes=minutes):
            idle.append(session)
    return idle


def engine_address(name: str) -> tuple[str, str]:
    """Where engine ``name`` (not local) lives: (docker URL, TLS directory), from
    ``VIBECODE_ENGINES`` or else its ``Engine`` row. No such engine: ``EngineUnavailable``."""
    configured = settings.VIBECODE_ENGINES.get(name)
    if configured is not None:
        return configured["url"], configured["tls_dir"]
    row = Engine.objects.filter(name=name).values_list("docker_url", "tls_dir").first()
    if row is None:
        raise EngineUnavailable(f"No container engine named {name!r} is configured.", engine=name)
    return row[0], row[1]


def engines_running_counts() -> dict[str, int]:
    """Sessions holding (or about to hold) a running sandbox, per engine."""
    rows = (
        Session.objects.filter(status__in=Session.ACTIVE_STATUSES)
        .values_list("engine")
        .annotate(n=Count("id"))
        .values_list("engine", "n")
    )
    return dict(rows)


def engines_committed_memory_mb() -> dict[str, int]:
    """The memory limits of the sessions holding a running sandbox, summed per engine."""
    committed: dict[str, int] = {}
    for engine, limits in Session.objects.filter(status__in=Session.ACTIVE_STATUSES).values_list(
        "engine", "limits"
    ):
        committed[engine] = committed.get(engine, 0) + int((limits or {}).get("memory_mb") or 0)
    return committed
