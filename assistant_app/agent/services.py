"""Agent mode's writes, as the API calls them: start a turn, decide on a step (accept, reject,
accept all, run, skip, answer), stop, undo, and the conversation's auto flags.

The caller passes a session its user owns (``sessions_app.selectors.session_get``)."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from assistant_app import providers
from assistant_app.agent import loop, state, tools
from assistant_app.agent.errors import AutoForbidden, InvalidDecision, StepNotFound, StepNotPending, TurnBusy
from assistant_app.agent.selectors import agent_turn_get
from assistant_app.models import (
    AgentAuditEvent,
    AgentCheckpoint,
    AgentSettings,
    AgentStep,
    AgentTurn,
    Conversation,
)
from core_app.errors import DomainError
from sessions_app.models import Session
from workspace_app import runs, services

logger = logging.getLogger(__name__)

MAX_GOAL_CHARS = 20000

# Which decisions answer which steps, and the status each one gives.
DECISIONS = {
    "accept": ({AgentStep.Kind.WRITE_FILE, AgentStep.Kind.EDIT_FILE}, AgentStep.Status.ACCEPTED),
    "accept_all": ({AgentStep.Kind.WRITE_FILE, AgentStep.Kind.EDIT_FILE}, AgentStep.Status.ACCEPTED),
    "reject": ({AgentStep.Kind.WRITE_FILE, AgentStep.Kind.EDIT_FILE}, AgentStep.Status.REJECTED),
    "run": ({AgentStep.Kind.RUN}, AgentStep.Status.ACCEPTED),
    "skip": ({AgentStep.Kind.RUN}, AgentStep.Status.SKIPPED),
    "answer": ({AgentStep.Kind.ASK_USER}, AgentStep.Status.ANSWERED),
}


def _conversation(session: Session) -> Conversation:
    conversation, _ = Conversation.objects.get_or_create(session=session)
    return conversation


def agent_settings_get(*, session: Session) -> dict[str, bool]:
    flags = AgentSettings.objects.filter(conversation__session=session).first()
    allowed = bool(settings.VIBECODE_AGENT_ALLOW_AUTO)
    return {
        "auto_apply": bool(flags and flags.auto_apply and allowed),
        "auto_run": bool(flags and flags.auto_run and allowed),
        "auto_allowed": allowed,
    }


def agent_settings_update(
    *, session: Session, auto_apply: bool | None = None, auto_run: bool | None = None
) -> dict[str, bool]:
    """Turn auto-apply / auto-run on or off for this conversation (403 ``auto_forbidden`` to turn
    one on when the server forbids them)."""
    if (auto_apply or auto_run) and not settings.VIBECODE_AGENT_ALLOW_AUTO:
        raise AutoForbidden()
    flags, _ = AgentSettings.objects.get_or_create(conversation=_conversation(session))
    if auto_apply is not None:
        flags.auto_apply = auto_apply
    if auto_run is not None:
        flags.auto_run = auto_run
    flags.save()
    return agent_settings_get(session=session)


def agent_turn_start(*, session: Session, user: Any, goal: str) -> AgentTurn:
    """Start working on ``goal`` in the background; the turn as it begins. 503
    ``assistant_not_configured`` without a provider, 409 ``turn_busy`` while another turn of this
    conversation is active, 409 ``session_not_running`` when the workspace is not running."""
    goal = goal.strip()
    if not goal or len(goal) > MAX_GOAL_CHARS:
        raise DomainError(f"Give a goal of 1 to {MAX_GOAL_CHARS} characters.", code="invalid_goal")
    provider, model = providers.get_provider()
    if session.status != Session.Status.RUNNING:
        raise DomainError(
            f"The session is {session.status}. Resume it to use the agent.", code="session_not_running"
        )
    conversation = _conversation(session)
    for active in AgentTurn.objects.filter(conversation=conversation, status__in=AgentTurn.ACTIVE):
        agent_turn_get(session=session, turn_id=active.pk)  # a turn whose worker is lost ends here
    try:
        with transaction.atomic():
            turn = AgentTurn.objects.create(
                conversation=conversation, user=user, goal=goal, provider=provider.name, model=model
            )
            AgentAuditEvent.objects.create(
                actor=user,
                session_public_id=session.public_id,
                turn_id=turn.pk,
                action=AgentAuditEvent.Action.TURN,
                detail={"goal": goal[:500], "provider": provider.name, "model": model},
            )
            transaction.on_commit(lambda: loop.worker_start(turn.pk))
    except IntegrityError:
        raise TurnBusy() from None
    logger.info("agent turn=%s session=%s queued", turn.pk, session.public_id)
    return turn


def agent_step_decide(
    *, session: Session, turn_id: int, index: int, decision: str, answer: str = ""
) -> AgentStep:
    """The user's decision on the step the turn waits on: ``accept`` / ``reject`` / ``accept_all``
    (this change and the turn's next ones) a file change, ``run`` / ``skip`` a command, or
    ``answer`` a question. 409 ``step_not_pending`` when it is not waiting."""
    turn = agent_turn_get(session=session, turn_id=turn_id)
    if decision not in DECISIONS:
        raise InvalidDecision(f"The decision must be one of {', '.join(DECISIONS)}.")
    step = AgentStep.objects.filter(turn=turn, index=index).first()
    if step is None:
        raise StepNotFound()
    kinds, status = DECISIONS[decision]
    if step.kind not in kinds:
        raise InvalidDecision(f"A {step.kind} step can't be answered with {decision!r}.")
    if turn.status not in AgentTurn.ACTIVE:
        raise StepNotPending()
    fields: dict[str, Any] = {"status": status}
    if decision == "answer":
        if not answer.strip():
            raise InvalidDecision("Type an answer.")
        fields["answer"] = answer[:10000]
    if decision == "accept_all":
        state.turn_update(turn, accept_all=True)
    if not state.step_claim(step, from_status=AgentStep.Status.PENDING, **fields):
        raise StepNotPending()
    return step


def agent_turn_stop(*, session: Session, turn_id: int) -> AgentTurn:
    """Stop the turn: a command it runs is killed at once (its whole process group); the worker
        ends at its next check (within a poll while it waits for the user; after the model's current
    step otherwise). A turn whose worker is gone is ended when read (``selectors``)."""
    turn = agent_turn_get(session=session, turn_id=turn_id)
    if turn.status not in AgentTurn.ACTIVE:
        return turn
    state.turn_update(turn, cancel_requested=True)
    running = AgentStep.objects.filter(turn=turn, kind=AgentStep.Kind.RUN, status=AgentStep.Status.RUNNING)
    for step in running.exclude(run_id=""):
        try:
            runs.run_stop(session=session, run_id=step.run_id)
        except DomainError as exc:
            logger.warning("agent turn=%s: stopping run %s: %s", turn.pk, step.run_id, exc.code)
    return agent_turn_get(session=session, turn_id=turn_id)


def agent_turn_undo(*, session: Session, user: Any, turn_id: int, force: bool = False) -> dict[str, Any]:
    """Put back every file the turn changed as it was before the turn (a file it created is
    deleted). A file edited since the agent's write is left alone and reported (``conflicts``)
    unless ``force``. 409 ``turn_busy`` while the turn is active."""
    turn = agent_turn_get(session=session, turn_id=turn_id)
    if turn.status in AgentTurn.ACTIVE:
        raise TurnBusy("Stop the turn, or wait for it to end, before undoing it.")
    restored: list[str] = []
    conflicts: list[str] = []
    for checkpoint in AgentCheckpoint.objects.filter(turn=turn).order_by("path"):
        current = tools.file_state(session=session, path=checkpoint.path)
        if current.etag != checkpoint.etag_after and not force:
            conflicts.append(checkpoint.path)
            continue
        if checkpoint.existed:
            services.workspace_write(session=session, path=checkpoint.path, content=bytes(checkpoint.content))
        elif current.exists:
            services.workspace_delete(session=session, path=checkpoint.path)
        restored.append(checkpoint.path)
    AgentAuditEvent.objects.create(
        actor=user,
        session_public_id=session.public_id,
        turn_id=turn.pk,
        action=AgentAuditEvent.Action.UNDO,
        detail={"restored": restored, "conflicts": conflicts},
    )
    if not conflicts:
        state.turn_update(turn, status=AgentTurn.Status.UNDONE)
    return {
        "restored": restored,
        "conflicts": conflicts,
        "turn": agent_turn_get(session=session, turn_id=turn_id),
    }
