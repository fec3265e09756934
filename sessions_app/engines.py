"""Engines: the Docker engines workspaces live on, and where a new workspace goes (docs/engines.md).

* :func:`engines_sync_from_env` makes the rows of the engines the environment names: ``local``
  (``DOCKER_HOST``) and ``VIBECODE_ENGINES``. Their URL and TLS directory follow the
  environment; their state and capacity are the admin's.
* :func:`engine_candidates` (outside any transaction: it asks the engines) lists the active
  engines that answer and hold the sandbox image, with their free memory;
  :func:`engine_claim` (inside the create's transaction, under the engine rows' locks) picks the
  one with room: fewest running workspaces, then most free memory. No room: ``NoCapacity``.
* With only ``local``, active and unlimited (every deployment that configures nothing), neither
  asks Docker anything: placement is ``local``, as before engines existed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from core_app.errors import DomainError
from sessions_app.audit import session_event_record
from sessions_app.errors import NoCapacity
from sessions_app.models import LOCAL_ENGINE, Engine, SessionEvent
from sessions_app.runtime import get_runtime
from sessions_app.selectors import engines_committed_memory_mb, engines_running_counts

logger = logging.getLogger(__name__)

MiB = 1024 * 1024


def engines_sync_from_env() -> list[Engine]:
    """Create or update the rows of the engines the environment names; returns every engine.
    One query when nothing changed."""
    wanted = {LOCAL_ENGINE: (settings.DOCKER_HOST, "")}
    for name, config in settings.VIBECODE_ENGINES.items():
        wanted[name] = (config["url"], config["tls_dir"])
    engines = list(Engine.objects.all())
    have = {engine.name: (engine.docker_url, engine.tls_dir) for engine in engines}
    if all(have.get(name) == address for name, address in wanted.items()):
        return engines
    with transaction.atomic():
        for name, (url, tls_dir) in wanted.items():
            Engine.objects.update_or_create(name=name, defaults={"docker_url": url, "tls_dir": tls_dir})
    return list(Engine.objects.all())


def engine_set_state(*, engine: Engine, state: str, actor: AbstractBaseUser | None = None) -> Engine:
    """Make an engine active, draining or disabled (admin actions). Draining and disabled engines
    get no new workspaces; the ones they hold keep working."""
    if state not in Engine.State.values:
        raise DomainError(f"Unknown engine state {state!r}.", code="invalid_state")
    Engine.objects.filter(pk=engine.pk).update(state=state)
    engine.refresh_from_db()
    session_event_record(
        session=None, action=SessionEvent.Action.ENGINE, actor=actor, engine=engine.name, state=state
    )
    logger.info("engine %s is now %s", engine.name, state)
    return engine


@dataclass(frozen=True)
class Candidate:
    name: str
    free_memory_mb: int | None  # engine memory minus the reserve; None: no memory check
    # Only local, active and unlimited: nothing to count or lock.
    unlimited: bool = False


def _only_local(engines: list[Engine]) -> bool:
    active = [engine for engine in engines if engine.state == Engine.State.ACTIVE]
    return (
        len(active) == 1
        and active[0].name == LOCAL_ENGINE
        and not active[0].max_sessions
        and not active[0].memory_reserve_mb
    )


def engine_candidates() -> list[Candidate]:
    """The active engines a new workspace may go to: they answer and hold the sandbox image.
    Calls the engines: never inside a transaction. Only ``local``, unlimited: no Docker call."""
    engines = engines_sync_from_env()
    if _only_local(engines):
        return [Candidate(name=LOCAL_ENGINE, free_memory_mb=None, unlimited=True)]
    runtime = get_runtime()
    candidates = []
    for engine in engines:
        if engine.state != Engine.State.ACTIVE:
            continue
        try:
            if not runtime.image_id(settings.VIBECODE_SANDBOX_IMAGE, engine=engine.name):  # type: ignore[call-arg]
                logger.warning("engine %s lacks the image %s", engine.name, settings.VIBECODE_SANDBOX_IMAGE)
                continue
            free = None
            if engine.memory_reserve_mb:
                total = runtime.engine_memory_bytes(engine=engine.name)  # type: ignore[call-arg]
                free = (total or 0) // MiB - engine.memory_reserve_mb
        except DomainError as exc:
            logger.warning("engine %s left out of placement: %s", engine.name, exc.detail)
            continue
        candidates.append(Candidate(name=engine.name, free_memory_mb=free))
    return candidates


def engine_claim(candidates: list[Candidate], *, memory_mb: int) -> str:
    """The engine a new workspace goes to. Call inside the create's transaction, before the
    session row is made: the candidates' rows are locked, so concurrent creates count each
    other. Raises ``NoCapacity`` when none has room."""
    if len(candidates) == 1 and candidates[0].unlimited:
        return candidates[0].name
    names = [candidate.name for candidate in candidates]
    rows = {
        engine.name: engine
        for engine in Engine.objects.select_for_update().filter(name__in=names, state=Engine.State.ACTIVE)
    }
    running = engines_running_counts()
    committed = engines_committed_memory_mb()
    ranked = []
    for candidate in candidates:
        engine = rows.get(candidate.name)
        if engine is None:
            continue  # drained or disabled since the candidates were listed
        count = running.get(engine.name, 0)
        if engine.max_sessions and count >= engine.max_sessions:
            continue
        free = None
        if engine.memory_reserve_mb and candidate.free_memory_mb is not None:
            free = candidate.free_memory_mb - committed.get(engine.name, 0)
            if free < memory_mb:
                continue
        ranked.append((count, -(free if free is not None else 2**62), engine.name))
    if not ranked:
        raise NoCapacity()
    return sorted(ranked)[0][2]
