"""Server-rendered sign-in pages."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django_ratelimit.core import is_ratelimited

from core_app.net import client_ip


class LoginPage(auth_views.LoginView):
    template_name = "accounts/login.html"
    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        username = request.POST.get("username", "")[:150].lower()
        limited = is_ratelimited(
            request,
            group="login",
            key=lambda _group, _request: f"{client_ip(request)}:{username}",
            rate=settings.VIBECODE_RATE_LOGIN,
            increment=True,
        )
        if limited:
            form = self.get_form()
            form.errors.clear()
            response = self.render_to_response(
                self.get_context_data(
                    form=form, error="Too many sign-in attempts. Wait a minute and try again."
                )
            )
            response.status_code = 429
            response["Retry-After"] = "60"
            return response
        return super().post(request, *args, **kwargs)


def logout_page(request: HttpRequest) -> HttpResponse:
    """GET asks to confirm (a link must not sign anyone out); POST signs out."""
    if request.method == "POST":
        logout(request)
        return redirect(settings.LOGOUT_REDIRECT_URL)
    return render(request, "accounts/logout.html")
