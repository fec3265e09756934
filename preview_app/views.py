"""The page that opens a preview: ``/sessions/<id>/preview/<port>/`` hands the signed-in owner off
to the port's own origin with a single-use token (the app's cookies never go there)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from core_app.errors import DomainError
from preview_app import services
from sessions_app import selectors
from sessions_app.errors import SessionNotFound
from sessions_app.models import Session
from sessions_app.views import AuthenticatedHttpRequest


@never_cache
@login_required
@require_safe
def preview_open(request: AuthenticatedHttpRequest, session_id: str, port: str) -> HttpResponse:
    try:
        session = selectors.session_get(user=request.user, public_id=session_id)
        number = services.clean_port(port)
    except (SessionNotFound, DomainError):
        # Someone else's session, none, or a port that cannot be previewed: the same 404 page.
        return render(request, "sessions/not_found.html", status=404)
    if session.status != Session.Status.RUNNING:
        messages.error(request, f"{session.name} is {session.status}. Resume it to open its previews.")
        return redirect("dashboard")
    url = services.handoff_redirect_url(request.user, session, number, request.GET.get("next"))
    # Not a Django redirect(): the preview origin is another host, on purpose.
    return HttpResponseRedirect(url)
