"""The turn's state in the database, and the version counter its event stream follows.

Every change to a turn or one of its steps goes through :func:`turn_update` / :func:`step_update`:
the turn's ``version`` grows by one, the step takes that version, and the cache key
``agent-turn:<id>`` holds it, so a stream polls the cache and reads the database only when
something changed."""

from __future__ import annotations

from typing import Any

from django.core.cache import cache
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from assistant_app.models import AgentStep, AgentTurn

VERSION_KEY = "agent-turn:{}"
VERSION_TTL = 24 * 3600


def version_key(turn_id: int) -> str:
    return VERSION_KEY.format(turn_id)


def _bump(turn_id: int, **fields: Any) -> int:
    with transaction.atomic():
        AgentTurn.objects.filter(pk=turn_id).update(version=F("version") + 1, **fields)
        version = AgentTurn.objects.filter(pk=turn_id).values_list("version", flat=True).get()
    transaction.on_commit(lambda: cache.set(version_key(turn_id), version, VERSION_TTL))
    return int(version)


def turn_update(turn: AgentTurn, **fields: Any) -> AgentTurn:
    """Change the turn's fields (and tell its streams)."""
    if (
        fields.get("status")
        in (
            AgentTurn.Status.DONE,
            AgentTurn.Status.FAILED,
            AgentTurn.Status.STOPPED,
        )
        and not turn.finished_at
    ):
        fields.setdefault("finished_at", timezone.now())
    fields.setdefault("heartbeat_at", timezone.now())
    turn.version = _bump(turn.pk, **fields)
    for name, value in fields.items():
        setattr(turn, name, value)
    return turn


def step_create(turn: AgentTurn, **fields: Any) -> AgentStep:
    with transaction.atomic():
        index = AgentStep.objects.filter(turn=turn).count()
        version = _bump(turn.pk, heartbeat_at=timezone.now())
        step = AgentStep.objects.create(turn=turn, index=index, version=version, **fields)
    turn.version = version
    return step


def step_update(step: AgentStep, **fields: Any) -> AgentStep:
    with transaction.atomic():
        version = _bump(step.turn_id, heartbeat_at=timezone.now())
        AgentStep.objects.filter(pk=step.pk).update(version=version, updated_at=timezone.now(), **fields)
    step.version = version
    for name, value in fields.items():
        setattr(step, name, value)
    return step


def step_claim(step: AgentStep, *, from_status: str, **fields: Any) -> bool:
    """Change the step only if it still has ``from_status`` (a decision races the worker)."""
    with transaction.atomic():
        version = _bump(step.turn_id)
        changed = AgentStep.objects.filter(pk=step.pk, status=from_status).update(
            version=version, updated_at=timezone.now(), **fields
        )
    if changed:
        step.version = version
        for name, value in fields.items():
            setattr(step, name, value)
    return bool(changed)
