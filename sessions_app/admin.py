"""Staff views of sessions, quotas and the audit log.

A session's state and its container change only through the services, so the admin offers
actions that call them (suspend, resume, delete with its volume) and nothing that edits a
session row or deletes it behind the runtime's back. The audit log is read-only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from core_app.errors import DomainError
from sessions_app import engines, services
from sessions_app.models import Engine, Quota, Session, SessionEvent, WarmSandbox


def _staff(request: HttpRequest) -> AbstractBaseUser:
    """The signed-in staff user: the admin site lets nobody else this far."""
    assert request.user.is_authenticated
    return request.user


@admin.register(Quota)
class QuotaAdmin(admin.ModelAdmin):
    list_display = [
        "user",
        "max_sessions",
        "max_running",
        "memory_mb",
        "cpus",
        "pids",
        "idle_timeout_minutes",
        "disk_mb",
    ]
    list_select_related = ["user"]
    search_fields = ["user__username", "user__email"]
    autocomplete_fields = ["user"]


@admin.register(Engine)
class EngineAdmin(admin.ModelAdmin):
    """The Docker engines (docs/engines.md). Staff add and edit them here; the actions change
    their state through the services. Engines named by the environment (local, VIBECODE_ENGINES)
    get their URL and TLS directory back from it on the next create."""

    list_display = [
        "name",
        "state",
        "docker_url",
        "max_sessions",
        "memory_reserve_mb",
        "running",
        "updated_at",
    ]
    list_filter = ["state"]
    search_fields = ["name", "docker_url"]
    readonly_fields = ["state", "created_at", "updated_at"]
    actions = ["activate_engines", "drain_engines", "disable_engines"]

    @admin.display(description="running workspaces")
    def running(self, engine: Engine) -> int:
        return Session.objects.filter(engine=engine.name, status__in=Session.ACTIVE_STATUSES).count()

    def has_delete_permission(self, request: HttpRequest, obj: Engine | None = None) -> bool:
        # An engine that still holds workspaces must not vanish from under them.
        if obj is not None and Session.objects.filter(engine=obj.name).exists():
            return False
        return super().has_delete_permission(request, obj)

    def _set_state(self, request: HttpRequest, queryset: QuerySet[Engine], state: str) -> None:
        actor = _staff(request)
        names = []
        for engine in queryset.order_by("name"):
            engines.engine_set_state(engine=engine, state=state, actor=actor)
            names.append(engine.name)
        self.message_user(request, f"Engine(s) {', '.join(names)} now {state}.", messages.SUCCESS)

    @admin.action(description="Activate (take new workspaces)", permissions=["change"])
    def activate_engines(self, request: HttpRequest, queryset: QuerySet[Engine]) -> None:
        self._set_state(request, queryset, Engine.State.ACTIVE)

    @admin.action(description="Drain (no new workspaces)", permissions=["change"])
    def drain_engines(self, request: HttpRequest, queryset: QuerySet[Engine]) -> None:
        self._set_state(request, queryset, Engine.State.DRAINING)

    @admin.action(description="Disable", permissions=["change"])
    def disable_engines(self, request: HttpRequest, queryset: QuerySet[Engine]) -> None:
        self._set_state(request, queryset, Engine.State.DISABLED)


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin):
    # The real names, as the runtime returned them: a session made from the warm pool keeps its
    # pool volume's name (vibecode-pool-...-ws), which backups, cleanup and reconcile use too.
    list_display = [
        "public_id",
        "name",
        "owner",
        "status",
        "runtime",
        "engine",
        "container_name",
        "volume_name",
        "created_at",
        "last_activity_at",
    ]
    list_filter = ["status", "runtime", "engine"]
    list_select_related = ["owner"]
    search_fields = ["public_id", "name", "owner__username", "container_name", "volume_name"]
    date_hierarchy = "created_at"
    actions = ["suspend_sessions", "resume_sessions", "delete_sessions"]
    # Everything the runtime reported, and the state the services keep; the change page is
    # view-only anyway (see has_change_permission), this holds should that ever change.
    readonly_fields = [
        "public_id",
        "owner",
        "status",
        "container_id",
        "container_name",
        "volume_name",
        "image",
        "runtime",
        "engine",
        "limits",
        "state_version",
        "created_at",
        "last_activity_at",
        "last_error",
    ]
    delete_sessions_template = "sessions/admin/delete_sessions_confirmation.html"

    # Sessions are made by their users, and changed or deleted only through the services (the
    # actions below): a row edited or deleted here would disagree with its container.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Session | None = None) -> bool:
        # Without an object this is the changelist's question "may this user run the actions?".
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Session | None = None) -> bool:
        return False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # Not "Select session to change": rows are only viewed; the actions do the changing.
        return super().changelist_view(request, {"title": "Sessions", **(extra_context or {})})

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def _run_service(
        self,
        request: HttpRequest,
        queryset: QuerySet[Session],
        service: Callable[..., object],
        done: str,
        **options: Any,
    ) -> None:
        """Call ``service`` on each session as the staff user; one message for the successes,
        one per failure (with the service's own explanation)."""
        actor = _staff(request)
        succeeded: list[str] = []
        failed: list[str] = []
        for session in queryset.order_by("pk"):
            try:
                service(session=session, actor=actor, **options)
            except DomainError as exc:
                failed.append(f"{session.public_id} ({session.name}): {exc.detail}")
            else:
                succeeded.append(session.public_id)
        if succeeded:
            summary = f"{done} {len(succeeded)} session(s): {', '.join(succeeded)}."
            self.message_user(request, summary, messages.SUCCESS)
        for failure in failed:
            self.message_user(request, f"Failed for {failure}", messages.ERROR)

    @admin.action(description="Suspend", permissions=["change"])
    def suspend_sessions(self, request: HttpRequest, queryset: QuerySet[Session]) -> None:
        self._run_service(request, queryset, services.session_suspend, "Suspended")

    @admin.action(description="Resume", permissions=["change"])
    def resume_sessions(self, request: HttpRequest, queryset: QuerySet[Session]) -> None:
        self._run_service(request, queryset, services.session_resume, "Resumed")

    @admin.action(description="Delete (removes the workspace volume)", permissions=["change"])
    def delete_sessions(self, request: HttpRequest, queryset: QuerySet[Session]) -> HttpResponse | None:
        """Like Django's ``delete_selected``: a confirmation page first, then the deletes."""
        if request.POST.get("post") == "yes":
            # force: staff chose these sessions, running or not, on the confirmation page.
            done = "Deleted (with their workspace volumes)"
            self._run_service(request, queryset, services.session_delete, done, force=True)
            return None  # back to the changelist
        sessions = list(queryset.select_related("owner").order_by("owner__username", "name"))
        context = {
            **self.admin_site.each_context(request),
            "title": "Delete sessions and their files?",
            "subtitle": None,
            "opts": self.model._meta,
            "sessions": sessions,
            "running": [session for session in sessions if session.status == Session.Status.RUNNING],
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.delete_sessions_template, context)


@admin.register(SessionEvent)
class SessionEventAdmin(admin.ModelAdmin):
    """The audit log: readable by staff, written only by the services."""

    list_display = ["created_at", "action", "session_public_id", "actor", "detail"]
    list_filter = ["action"]
    list_select_related = ["actor"]
    search_fields = ["session_public_id"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: SessionEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: SessionEvent | None = None) -> bool:
        return False


@admin.register(WarmSandbox)
class WarmSandboxAdmin(admin.ModelAdmin):
    """The warm pool's members, read-only: the refill makes them, a create claims them and
    reconcile removes them (sessions_app/warm_pool.py). A claimed member names its session."""

    list_display = [
        "container_name",
        "state",
        "volume_name",
        "short_container_id",
        "session",
        "image",
        "runtime",
        "engine",
        "created_at",
        "ready_at",
        "claimed_at",
    ]
    list_filter = ["state", "runtime", "engine"]
    list_select_related = ["session"]
    search_fields = ["pool_id", "container_name", "volume_name", "session__public_id"]
    readonly_fields = [
        "pool_id",
        "state",
        "container_id",
        "container_name",
        "volume_name",
        "image",
        "runtime",
        "limits",
        "spec_key",
        "session",
        "created_at",
        "ready_at",
        "claimed_at",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: WarmSandbox | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: WarmSandbox | None = None) -> bool:
        return False
