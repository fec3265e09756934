"""Server-rendered pages of sessions: the dashboard at ``/`` and the forms it posts to.

Thin views over the services, like the API: every POST redirects back with a message, a domain
error becomes its ``detail`` in a readable message, and another user's session is a 404 page.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.timesince import timesince
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from core_app.errors import DomainError
from lsp_app.servers import language_servers_for_page
from sessions_app import ide_assets, selectors, services, workbench
from sessions_app.errors import SessionNotFound, SessionRunning
from sessions_app.models import Session


class AuthenticatedHttpRequest(HttpRequest):
    """What ``login_required`` guarantees: a signed-in user (django-stubs' spelling of it)."""

    user: User


SessionView = Callable[[AuthenticatedHttpRequest, Session], HttpResponse]


def own_session(view: SessionView) -> Callable[[AuthenticatedHttpRequest, str], HttpResponse]:
    """Load the signed-in user's session ``session_id``; anyone else's is a 404 page."""

    @wraps(view)
    def wrapper(request: AuthenticatedHttpRequest, session_id: str) -> HttpResponse:
        try:
            session = selectors.session_get(user=request.user, public_id=session_id)
        except SessionNotFound:
            return render(request, "sessions/not_found.html", status=404)
        return view(request, session)

    return wrapper


@dataclass(frozen=True)
class SessionRow:
    session: Session
    created_ago: str
    active_ago: str


def _ago(moment: datetime, now: datetime) -> str:
    """A short relative time for a table ("just now", "3 minutes ago", "2 days ago")."""
    if now - moment < timedelta(minutes=1):
        return "just now"
    return f"{timesince(moment, now, depth=1)} ago"


@login_required
@require_safe
def dashboard(request: AuthenticatedHttpRequest) -> HttpResponse:
    sessions = list(selectors.session_list(user=request.user))
    now = timezone.now()
    rows = [
        SessionRow(session, _ago(session.created_at, now), _ago(session.last_activity_at, now))
        for session in sessions
    ]
    quota = selectors.quota_for(user_id=request.user.pk)
    running = sum(session.status == Session.Status.RUNNING for session in sessions)
    return render(
        request,
        "sessions/dashboard.html",
        {
            "rows": rows,
            "quota": quota,
            "running_count": running,
            "at_session_limit": len(sessions) >= quota.max_sessions,
            "name_max_length": services.MAX_NAME_LENGTH,
            "ide_prefetch": ide_assets.ide_prefetch_urls(),
        },
    )


@login_required
@require_POST
def session_create(request: AuthenticatedHttpRequest) -> HttpResponse:
    try:
        name = request.POST.get("name", "").strip() or None
        session = services.session_create(user=request.user, name=name)
    except DomainError as exc:
        messages.error(request, f"Could not create the workspace. {exc.detail}")
    else:
        messages.success(request, f"Created “{session.name}”. It is running.")
    return redirect("dashboard")


@login_required
@require_POST
@own_session
def session_suspend(request: AuthenticatedHttpRequest, session: Session) -> HttpResponse:
    try:
        services.session_suspend(session=session, actor=request.user)
    except DomainError as exc:
        messages.error(request, f"Could not suspend “{session.name}”. {exc.detail}")
    else:
        messages.success(request, f"Suspended “{session.name}”. Its files are kept; resume it any time.")
    return redirect("dashboard")


@login_required
@require_POST
@own_session
def session_resume(request: AuthenticatedHttpRequest, session: Session) -> HttpResponse:
    try:
        services.session_resume(session=session, actor=request.user)
    except DomainError as exc:
        messages.error(request, f"Could not resume “{session.name}”. {exc.detail}")
    else:
        messages.success(request, f"“{session.name}” is running again.")
    return redirect("dashboard")


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
@own_session
def session_delete(request: AuthenticatedHttpRequest, session: Session) -> HttpResponse:
    """GET asks to confirm; POST deletes. A running session also needs ``force`` ticked."""
    if request.method != "POST":
        return render(request, "sessions/delete.html", {"session": session})
    try:
        services.session_delete(session=session, actor=request.user, force=request.POST.get("force") == "on")
    except SessionRunning:
        messages.error(
            request,
            f"“{session.name}” is running, so it was not deleted. Tick “Stop it and delete anyway”, "
            "or suspend it first.",
        )
        return redirect("session-delete", session_id=session.public_id)
    except DomainError as exc:
        messages.error(request, f"“{session.name}” was not deleted. {exc.detail}")
        return redirect("session-delete", session_id=session.public_id)
    messages.success(request, f"Deleted “{session.name}” and its files.")
    return redirect("dashboard")


@login_required
@require_safe
@own_session
def ide(request: AuthenticatedHttpRequest, session: Session) -> HttpResponse:
    """The IDE page of one session, whatever its state: a workspace still starting (or stopped)
    shows its progress (or a Resume button) and the page connects the terminal once it runs.
    The saved workbench comes inside the page, so the terminal needs no request before it."""
    state, row = workbench.workbench_get(session=session)
    data = {
        "sessionId": session.public_id,
        "name": session.name,
        "status": session.status,
        "lastError": session.last_error,
        "workbench": state,
        # Never saved: a new workspace opens terminal 1 without listing terminals first.
        "workbenchSaved": row is not None,
        "monaco": ide_assets.monaco_base(),
        "idleDeadline": selectors.session_idle_deadline(session).isoformat()
        if session.status == Session.Status.RUNNING
        else None,
        "idleTimeoutMinutes": selectors.quota_for(user_id=session.owner_id).idle_timeout_minutes,
        "username": request.user.get_username(),
        # Which file endings have a language server in the sandbox (static/vibecode/ide/lsp.js).
        "languageServers": language_servers_for_page(),
    }
    return render(
        request,
        "sessions/ide.html",
        {"session": session, "ide_data": data, "ide_modules": ide_assets.ide_module_urls()},
    )
