"""Agent mode's reads: the turns of a session's conversation with their steps, and the event
stream of one turn. A turn left active by a worker that stopped beating is ended here, as
``failed`` ``worker_lost``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from assistant_app.agent import state
from assistant_app.agent.errors import TurnNotFound
from assistant_app.models import AgentStep, AgentTurn
from sessions_app.models import Session

TURNS_SHOWN = 20
POLL_SECONDS = 0.25
KEEPALIVE_SECONDS = 15.0


def lost_after() -> timedelta:
    # A worker beats at least every few seconds while it works or waits; a model step may be
    # silent for up to the provider timeout.
    return timedelta(seconds=settings.VIBECODE_ASSISTANT_TIMEOUT_SECONDS + 60)


def _check_alive(turn: AgentTurn) -> AgentTurn:
    if turn.status in AgentTurn.ACTIVE and turn.heartbeat_at < timezone.now() - lost_after():
        state.turn_update(
            turn,
            status=AgentTurn.Status.FAILED if not turn.cancel_requested else AgentTurn.Status.STOPPED,
            error_code="worker_lost",
            error_detail="The server working on this turn restarted; start the turn again.",
        )
    return turn


def agent_turn_get(*, session: Session, turn_id: int) -> AgentTurn:
    turn = AgentTurn.objects.filter(pk=turn_id, conversation__session=session).first()
    if turn is None:
        raise TurnNotFound()
    return _check_alive(turn)


def agent_turns(*, session: Session, limit: int = TURNS_SHOWN) -> list[AgentTurn]:
    """The latest ``limit`` turns, oldest first, with their steps."""
    latest = AgentTurn.objects.filter(conversation__session=session).order_by("-created_at", "-id")[:limit]
    turns = [_check_alive(turn) for turn in reversed(latest)]
    return list(
        AgentTurn.objects.filter(pk__in=[t.pk for t in turns])
        .prefetch_related("steps")
        .order_by("created_at", "id")
    )


def agent_turn_steps(*, turn: AgentTurn) -> list[AgentStep]:
    return list(AgentStep.objects.filter(turn=turn).order_by("index"))


def _sse(name: str, data: dict[str, Any], event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def agent_turn_events(
    *,
    session: Session,
    turn_id: int,
    after: int,
    render_step: Callable[[AgentStep], dict[str, Any]],
    render_turn: Callable[[AgentTurn], dict[str, Any]],
) -> Iterator[bytes]:
    """Server-sent events of the turn from version ``after`` on: ``step`` (a step that is new or
    changed), ``turn`` (its status and counters); the id of each is the version to resume from
    (``Last-Event-ID``). ``end`` when the turn is over, then the stream closes.

    The stream polls the cache key the writers bump and reads the database only when it moved;
    it holds no database connection between reads (``connection.close()`` outside a test's
    transaction), so an open stream costs a cache read four times a second."""
    agent_turn_get(session=session, turn_id=turn_id)  # 404 before the first byte

    def read(since: int) -> tuple[AgentTurn, list[AgentStep]]:
        turn = AgentTurn.objects.get(pk=turn_id)
        _check_alive(turn)
        steps = list(AgentStep.objects.filter(turn_id=turn_id, version__gt=since).order_by("version"))
        if not connection.in_atomic_block:
            connection.close()
        return turn, steps

    def body() -> Iterator[bytes]:
        seen = after
        quiet_since = time.monotonic()
        yield b"retry: 1000\n\n"
        while True:
            turn, steps = read(seen)
            for step in steps:
                yield _sse("step", render_step(step), step.version)
            if turn.version > seen:
                yield _sse("turn", render_turn(turn), turn.version)
                seen = turn.version
                quiet_since = time.monotonic()
            if turn.status not in AgentTurn.ACTIVE:
                yield _sse("end", {"status": turn.status}, seen)
                return
            while True:
                time.sleep(POLL_SECONDS)
                current = cache.get(state.version_key(turn_id))
                if current is None or current != seen:
                    break  # moved, or not in the cache (evicted, a restart): read the database
                if time.monotonic() - quiet_since > KEEPALIVE_SECONDS:
                    quiet_since = time.monotonic()
                    yield b": keepalive\n\n"

    return body()
