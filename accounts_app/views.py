"""Server-rendered sign-in pages."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from core_app.api.throttling import login_refusal


class LoginPage(auth_views.LoginView):
    template_name = "accounts/login.html"
    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        wait = login_refusal(request, request.POST.get("username", ""))
        if wait is not None:
            form = self.get_form()
            form.errors.clear()
            response = self.render_to_response(
                self.get_context_data(
                    form=form, error="Too many sign-in attempts. Wait a while and try again."
                )
            )
            response.status_code = 429
            response["Retry-After"] = str(int(wait))
            return response
        return super().post(request, *args, **kwargs)


def logout_page(request: HttpRequest) -> HttpResponse:
    """GET asks to confirm (a link must not sign anyone out); POST signs out."""
    if request.method == "POST":
        logout(request)
        return redirect(settings.LOGOUT_REDIRECT_URL)
    return render(request, "accounts/logout.html")
