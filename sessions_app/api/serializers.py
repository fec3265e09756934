from __future__ import annotations

from rest_framework import serializers

from sessions_app.models import Session
from sessions_app.selectors import session_idle_deadline
from sessions_app.services import MAX_NAME_LENGTH
from sessions_app.specs import disk_mb


class SessionCreateInput(serializers.Serializer):
    # The length and character checks live in the service (clean_session_name), so the API,
    # the pages and the admin refuse the same names with the same words.
    name = serializers.CharField(
        required=False, allow_blank=True, trim_whitespace=False, max_length=10 * MAX_NAME_LENGTH
    )
    # false: answer 202 as soon as the session is claimed (``creating``), and start its sandbox
    # in the background; poll the session until it is ``running`` (or ``error``, with last_error).
    wait = serializers.BooleanField(required=False, default=True)


class SessionResumeInput(serializers.Serializer):
    # false: answer 202 once the resume is claimed (``resuming``); a failure puts the session back
    # as it was, with last_error.
    wait = serializers.BooleanField(required=False, default=True)


class SessionOutput(serializers.ModelSerializer):
    session_id = serializers.CharField(source="public_id")
    idle_deadline = serializers.SerializerMethodField()
    disk_mb = serializers.SerializerMethodField()

    class Meta:
        model = Session
        fields = [
            "session_id",
            "name",
            "status",
            "container_name",
            "volume_name",
            "image",
            "runtime",
            "engine",
            "limits",
            "disk_mb",
            "created_at",
            "last_activity_at",
            "idle_deadline",
            "last_error",
        ]

    def get_disk_mb(self, session: Session) -> int | None:
        """The workspace's hard disk quota in MB; null for a volume without one."""
        return disk_mb(session)

    def get_idle_deadline(self, session: Session) -> str | None:
        if session.status != Session.Status.RUNNING:
            return None
        return session_idle_deadline(session).isoformat()


class StatsOutput(serializers.Serializer):
    cpu_percent = serializers.FloatField()
    memory_bytes = serializers.IntegerField()
    memory_limit_bytes = serializers.IntegerField()
    pids = serializers.IntegerField()
    # Bytes used in the workspace and its quota; null for a workspace without a disk quota.
    disk_bytes = serializers.IntegerField(allow_null=True)
    disk_limit_bytes = serializers.IntegerField(allow_null=True)


# --- Workbench state (issue 15) ---
# Terminal ids as terminal_app accepts them (terminal_app.services.TERMINAL_ID; sessions_app
# sits below terminal_app and does not import it).
WORKBENCH_TERMINAL_ID = r"^[A-Za-z0-9_-]{1,32}$"
WORKBENCH_MAX_TABS = 200
WORKBENCH_MAX_TERMINALS = 64


class WorkbenchTab(serializers.Serializer):
    path = serializers.CharField(max_length=4096, trim_whitespace=False)
    line = serializers.IntegerField(min_value=1, max_value=10_000_000, default=1)
    column = serializers.IntegerField(min_value=1, max_value=10_000_000, default=1)
    scroll_top = serializers.FloatField(min_value=0, max_value=1e9, default=0)
    scroll_left = serializers.FloatField(min_value=0, max_value=1e9, default=0)


class WorkbenchStateInput(serializers.Serializer):
    tabs = WorkbenchTab(many=True, max_length=WORKBENCH_MAX_TABS, default=list)
    active = serializers.CharField(max_length=4096, allow_null=True, default=None, trim_whitespace=False)
    panel_height = serializers.IntegerField(min_value=0, max_value=100_000, allow_null=True, default=None)
    terminals = serializers.ListField(
        child=serializers.RegexField(WORKBENCH_TERMINAL_ID), max_length=WORKBENCH_MAX_TERMINALS, default=list
    )
    active_terminal = serializers.RegexField(WORKBENCH_TERMINAL_ID, allow_null=True, default=None)

    def validate(self, attrs: dict) -> dict:
        paths = [tab["path"] for tab in attrs["tabs"]]
        if len(set(paths)) != len(paths):
            raise serializers.ValidationError({"tabs": "A file is open in two tabs."}, code="duplicate_tab")
        if attrs["active"] is not None and attrs["active"] not in paths:
            raise serializers.ValidationError({"active": "The active tab is not among the tabs."})
        if len(set(attrs["terminals"])) != len(attrs["terminals"]):
            raise serializers.ValidationError({"terminals": "A terminal is listed twice."})
        if attrs["active_terminal"] is not None and attrs["active_terminal"] not in attrs["terminals"]:
            raise serializers.ValidationError(
                {"active_terminal": "The active terminal is not among the terminals."}
            )
        return attrs


class WorkbenchStateOutput(WorkbenchStateInput):
    updated_at = serializers.DateTimeField(allow_null=True, read_only=True)
